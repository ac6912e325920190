// A job that dropped its privileges comes back with the same uids, gids, groups and
// no_new_privs (restore injects them into every thread last).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

TEST(RestoreCreds, UnprivilegedJobKeepsItsCredentials) {
  CheckpointEnv env;
  ASSERT_EQ(chmod(env.work().c_str(), 0777), 0);  // the job writes its status as uid 1005
  std::filesystem::path images = env.image_dir("creds");
  std::filesystem::path status;
  std::uint64_t n = 0;
  {
    Container original(env, "creds");
    ASSERT_TRUE(original.run(c_workload("creds")));
    ASSERT_TRUE(wait_for_progress(original.status(), 0, 10s, &n));
    ASSERT_TRUE(original.dump(images));
    status = original.status();
    n = std::max(n, read_status(status).progress);
  }
  Container restored(env, "creds-restored");
  ASSERT_TRUE(restored.restore(images, status));
  ASSERT_TRUE(wait_for_progress(status, n, 20s, &n, n));
  ASSERT_TRUE(keep_progressing(status, 1000ms));
}

}  // namespace
}  // namespace stasis::test
