// Full register state: the avx workload spends nearly all its time in an asm loop comparing
// ymm0-ymm15 and r12-r15 with a pattern, so the dump catches it there.
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

TEST(CheckpointAvx, RegistersSurviveDumpAndRestore) { check_round_trip(c_workload("avx")); }

TEST(CheckpointAvx, RegistersSurviveDumpLeaveRunning) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(c_workload("avx"), how);
}

// Several dumps in a row of the same running process, each restored: more chances to land
// in the middle of the loop.
TEST(CheckpointAvx, RepeatedDumpsAllRestore) {
  CheckpointEnv env;
  Container original(env, "avx");
  ASSERT_TRUE(original.run(c_workload("avx")));
  for (int i = 0; i < 3; ++i) {
    std::uint64_t n = 0;
    ASSERT_TRUE(wait_for_progress(original.status(), 0, 10s, &n));
    auto images = env.image_dir("avx-" + std::to_string(i));
    ASSERT_TRUE(original.dump(images, {"--leave-running"}));
    ASSERT_TRUE(wait_for_progress(original.status(), n, 10s)) << "original stopped after dump " << i;
  }
  auto status = original.status();
  original.remove();
  for (int i = 0; i < 3; ++i) {
    clear_status(status);
    Container restored(env, "avx-restored");
    ASSERT_TRUE(restored.restore(env.image_dir("avx-" + std::to_string(i)), status));
    ASSERT_TRUE(keep_progressing(status, 1000ms)) << "restore of dump " << i;
  }
}

}  // namespace
}  // namespace stasis::test
