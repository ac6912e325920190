// Open files: offsets, O_APPEND, a deleted file, a read-only file, a pipe with buffered data.
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

// The files are shared with the original, so it must be stopped by the dump.
TEST(CheckpointFiles, OpenFilesComeBackWithOffsetsAndContents) { check_round_trip(c_workload("files")); }

// A file the image refers to has disappeared: restore must fail and say which file.
TEST(CheckpointFiles, RestoreWithMissingFileFailsClearly) {
  CheckpointEnv env;
  Container original(env, "files");
  ASSERT_TRUE(original.run(c_workload("files")));
  ASSERT_TRUE(wait_for_progress(original.status(), 1, 10s));
  fs::path images = env.image_dir("files");
  ASSERT_TRUE(original.dump(images));
  ASSERT_TRUE(original.wait_gone());
  fs::path ro = original.status().string() + ".ro";
  ASSERT_TRUE(fs::remove(ro));
  Container restored(env, "files-missing");
  auto r = restored.restore(images, original.status());
  ASSERT_FALSE(r) << "restore succeeded although " << ro << " is gone";
  EXPECT_NE(std::string(r.message()).find(ro.filename().string()), std::string::npos)
      << "the error should name the missing file: " << r.message();
  EXPECT_FALSE(restored.host_pid().has_value()) << "a failed restore must leave nothing running";
}

}  // namespace
}  // namespace stasis::test
