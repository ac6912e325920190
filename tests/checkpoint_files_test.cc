// Open files: offsets, O_APPEND, a deleted file, a read-only file, a pipe with buffered data.
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

// The files are shared with the original, so it must be stopped by the dump.
TEST(CheckpointFiles, OpenFilesComeBackWithOffsetsAndContents) { check_round_trip(c_workload("files")); }

// An epoll event loop over a timerfd, an eventfd, a signalfd and a pipe carries on.
TEST(CheckpointFiles, EventLoopCarriesOn) { check_round_trip(c_workload("events")); }

TEST(CheckpointFiles, EventLoopLeaveRunning) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(c_workload("events"), how);
}

// inotify watches come back with their descriptors (one of them used up before the dump).
TEST(CheckpointFiles, InotifyWatchesComeBack) { check_round_trip(c_workload("watcher")); }

// flock, POSIX and OFD locks are held again after restore (the workload probes them).
TEST(CheckpointFiles, FileLocksComeBack) { check_round_trip(c_workload("file_locks")); }

// The original still runs (--leave-running) and holds its locks: the restore cannot take them,
// says so, and leaves nothing behind; the original runs on.
TEST(CheckpointFiles, LocksHeldByTheOriginalFailTheRestore) {
  CheckpointEnv env;
  Container original(env, "locks");
  ASSERT_TRUE(original.run(c_workload("file_locks")));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 10s, &n));
  fs::path images = env.image_dir("locks");
  ASSERT_TRUE(original.dump(images, {"--leave-running"}));
  Container copy(env, "locks-copy");
  auto r = copy.restore(images, original.status());
  ASSERT_FALSE(r) << "the restore took locks the original still holds";
  EXPECT_NE(std::string(r.message()).find("another process holds a conflicting lock"), std::string::npos)
      << r.message();
  EXPECT_FALSE(copy.host_pid().has_value()) << "a failed restore must leave nothing running";
  EXPECT_TRUE(wait_for_progress(original.status(), n, 10s));
}

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
