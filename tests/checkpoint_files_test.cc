// Open files: offsets, O_APPEND, a deleted file, a read-only file, a pipe with buffered data;
// files deleted while open (ghosts); files changed between dump and restore.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <fstream>

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

// Events queued and not read yet cannot be queued again by restore: the dump tries again a
// few times (the job may read them meanwhile), then refuses, naming them, and the job runs on.
TEST(CheckpointFiles, UnreadInotifyEventsAreRefused) {
  CheckpointEnv env;
  Container c(env, "watcher-unread");
  ASSERT_TRUE(c.run(c_workload("watcher", {"unread"})));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(c.status(), 0, 10s, &n));
  const fs::path images = env.image_dir("unread");
  EXPECT_FALSE(c.dump(images));
  EXPECT_NE(c.last_output().find("events the job has not read yet"), std::string::npos) << c.last_output();
  EXPECT_NE(c.last_output().find("inotify"), std::string::npos) << c.last_output();
  EXPECT_FALSE(fs::exists(images / "inventory.img"));
  ASSERT_TRUE(wait_for_progress(c.status(), n, 10s, &n)) << "the job must run on after a refused dump";
}

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

// Owner, group, mode and mtime of a deleted file and of a memfd are the dump's, not root's.
TEST(CheckpointFiles, GhostsKeepOwnerModeAndTimes) { check_round_trip(c_workload("ghosts", {"owner"})); }

// Two hard-linked names of one deleted file, and the same deleted name opened again, come back
// as one inode: a write through one fd is seen through the others.
TEST(CheckpointFiles, HardLinkedGhostStaysOneFile) { check_round_trip(c_workload("ghosts", {"links"})); }

// Dumped with --leave-running (the original runs on, writing through its ghosts, and is
// removed after): the copy's ghosts are made from the dumped data, one inode per dumped inode.
TEST(CheckpointFiles, GhostsAfterLeaveRunning) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(c_workload("ghosts", {"links"}), how);
  check_round_trip(c_workload("ghosts", {"cwd"}), how);
}

// A deleted file of 1 GiB with 8 KiB of data: saved by its data alone, under the default
// ghost limit, and restored with its holes and mtime.
TEST(CheckpointFiles, SparseGhostKeepsHolesAndMtime) { check_round_trip(c_workload("ghosts", {"sparse"})); }

// A deleted working directory, with a deleted file in it, comes back as a ghost directory
// holding the ghost of the file.
TEST(CheckpointFiles, DeletedWorkingDirectoryComesBack) { check_round_trip(c_workload("ghosts", {"cwd"})); }

// A deleted file in a directory deleted too: the directory is made again for the while.
TEST(CheckpointFiles, DeletedFileInDeletedDirectoryComesBack) {
  check_round_trip(c_workload("ghosts", {"dirfile"}));
}

// A deleted directory held open by an fd comes back as a ghost directory.
TEST(CheckpointFiles, HeldDeletedDirectoryComesBack) { check_round_trip(c_workload("ghosts", {"held"})); }

// A deleted file whose name a new file took, and one with a name too long for a suffix of ours.
TEST(CheckpointFiles, GhostsWithReusedOrLongNames) { check_round_trip(c_workload("ghosts", {"names"})); }

// A file deleted under a read-only mount could not be made again there: the dump refuses it,
// naming it, and the job runs on.
TEST(CheckpointFiles, GhostOnReadOnlyMountIsRefused) {
  CheckpointEnv env;
  const fs::path rw = env.work() / "rw", ro = env.work() / "ro";
  fs::create_directories(rw);
  fs::create_directories(ro);
  std::ofstream(rw / "f") << "data\n";
  ASSERT_EQ(::mount(rw.c_str(), ro.c_str(), nullptr, MS_BIND, nullptr), 0) << strerror(errno);
  struct Unmount {
    fs::path path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{ro};
  ASSERT_EQ(::mount(nullptr, ro.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr), 0) << strerror(errno);
  Container original(env, "ghost-ro");
  ASSERT_TRUE(original.run(c_workload("ghosts", {"rofile", (ro / "f").string(), (rw / "f").string()})));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 10s, &n));
  auto r = original.dump(env.image_dir("ghost-ro"));
  ASSERT_FALSE(r) << "a file deleted on a read-only mount was dumped; restore could not make it there";
  EXPECT_NE(std::string(r.message()).find("deleted on a read-only mount"), std::string::npos) << r.message();
  EXPECT_TRUE(wait_for_progress(original.status(), n, 10s)) << "the job must run on after a refused dump";
}

// A file whose name was deleted while another hard link lives on cannot be reopened by path:
// the dump refuses it, naming it, and the job runs on.
TEST(CheckpointFiles, FileWithOnlyAnotherLinkLeftIsRefused) {
  CheckpointEnv env;
  Container original(env, "other-link");
  ASSERT_TRUE(original.run(c_workload("ghosts", {"otherlink"})));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 10s, &n));
  auto r = original.dump(env.image_dir("other-link"));
  ASSERT_FALSE(r) << "a file opened by a deleted name was dumped; restore could not reopen it";
  EXPECT_NE(std::string(r.message()).find("the name it was opened by was deleted"), std::string::npos) << r.message();
  EXPECT_TRUE(wait_for_progress(original.status(), n, 10s)) << "the job must run on after a refused dump";
}

// Over --ghost-limit, the dump is refused naming the option, and the job runs on.
TEST(CheckpointFiles, GhostOverTheLimitIsRefusedNamingTheOption) {
  CheckpointEnv env;
  Container original(env, "ghost-limit");
  ASSERT_TRUE(original.run(c_workload("ghosts", {"sparse"})));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 10s, &n));
  fs::path images = env.image_dir("ghost-limit");
  auto r = original.dump(images, {"--ghost-limit", "4K"});
  ASSERT_FALSE(r) << "a deleted file with 8 KiB of data was dumped under a 4 KiB limit";
  EXPECT_NE(std::string(r.message()).find("exit 4"), std::string::npos) << "refused as unsupported: " << r.message();
  EXPECT_NE(std::string(r.message()).find("dump with a larger --ghost-limit"), std::string::npos) << r.message();
  EXPECT_TRUE(wait_for_progress(original.status(), n, 10s)) << "the job must run on after a refused dump";
}

// A file that the job had open was replaced after the dump (a log rotated): restore refuses it
// before starting anything, naming the file and the option.
TEST(CheckpointFiles, RotatedFileIsRefused) {
  CheckpointEnv env;
  Container original(env, "rotated");
  ASSERT_TRUE(original.run(c_workload("files")));
  ASSERT_TRUE(wait_for_progress(original.status(), 1, 10s));
  fs::path images = env.image_dir("rotated");
  ASSERT_TRUE(original.dump(images));
  ASSERT_TRUE(original.wait_gone());
  fs::path log = original.status().string() + ".log";
  fs::rename(log, log.string() + ".1");
  std::ofstream(log) << "a new log\n";
  Container restored(env, "rotated-copy");
  auto r = restored.restore(images, original.status());
  ASSERT_FALSE(r) << "restore reopened the rotated log " << log << " as if it were the dumped one";
  const std::string message = r.message();
  EXPECT_NE(message.find(log.string() + " changed since the dump"), std::string::npos) << message;
  EXPECT_NE(message.find("--allow-changed-file"), std::string::npos) << message;
  EXPECT_FALSE(restored.host_pid().has_value()) << "a refused restore must leave nothing running";
}

// A file open for appending may have grown since the dump (others appended to a shared log),
// never shrunk (truncated or rotated).
TEST(CheckpointFiles, AppendedFileMayGrowNotShrink) {
  CheckpointEnv env;
  Container original(env, "appended");
  ASSERT_TRUE(original.run(c_workload("files")));
  ASSERT_TRUE(wait_for_progress(original.status(), 1, 10s));
  fs::path images = env.image_dir("appended");
  ASSERT_TRUE(original.dump(images));
  ASSERT_TRUE(original.wait_gone());
  const fs::path append = original.status().string() + ".append";
  const auto size = fs::file_size(append);
  ASSERT_GT(size, 0u);
  fs::resize_file(append, size - 1);
  Container shrunk(env, "appended-shrunk");
  auto r = shrunk.restore(images, original.status());
  ASSERT_FALSE(r) << "restore took " << append << " although it shrank";
  EXPECT_NE(std::string(r.message()).find("size " + std::to_string(size) + " -> " + std::to_string(size - 1)),
            std::string::npos)
      << r.message();
  fs::resize_file(append, size + 100);
  Container grown(env, "appended-grown");
  // The workload itself will see the 100 bytes it did not write: only the restore is checked.
  EXPECT_TRUE(grown.restore(images, original.status())) << "a grown append-only file must be accepted";
}

// The same file replaced by an identical copy (a new inode, a new mtime) is refused, and taken
// with --allow-changed-file.
TEST(CheckpointFiles, ChangedFileIsAcceptedWhenAllowed) {
  CheckpointEnv env;
  Container original(env, "replaced");
  ASSERT_TRUE(original.run(c_workload("files")));
  ASSERT_TRUE(wait_for_progress(original.status(), 1, 10s));
  fs::path images = env.image_dir("replaced");
  ASSERT_TRUE(original.dump(images));
  ASSERT_TRUE(original.wait_gone());
  fs::path ro = original.status().string() + ".ro";
  fs::path copy = ro.string() + ".copy";
  fs::copy_file(ro, copy);
  fs::rename(copy, ro);
  Container refused(env, "replaced-refused");
  auto r = refused.restore(images, original.status());
  ASSERT_FALSE(r) << "restore took the replaced " << ro;
  EXPECT_NE(std::string(r.message()).find("another file now"), std::string::npos) << r.message();
  Container accepted(env, "replaced-accepted");
  ASSERT_TRUE(accepted.restore(images, original.status(), {"--allow-changed-file", ro.string()}));
  EXPECT_TRUE(keep_progressing(accepted.status(), 1500ms));
}

}  // namespace
}  // namespace stasis::test
