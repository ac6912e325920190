// The contents of a container's namespaces come back with it: the UTS names the job set, and
// its IPC namespace (SysV shared memory, semaphores and message queues with their ids and
// contents, POSIX message queues with their messages, IPC sysctls). What cannot come back is
// refused at dump time with the job left running; a restore that cannot recreate it fails and
// leaves nothing behind.
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "images/checkpoint.h"
#include "images/image_file.h"
#include "ipc.pb.h"
#include "launcher/config.h"
#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

fs::path trigger_of(const fs::path& status) { return status.string() + ".verify"; }

// Asks the restored ipc workload for its full check and waits until it has done it (it removes
// the trigger), then watches it use every object.
void full_check_after_restore(Container& restored) {
  const fs::path trigger = trigger_of(restored.status());
  { std::ofstream(trigger) << "check\n"; }
  ASSERT_TRUE(wait_until([&] { return !fs::exists(trigger); }, 10s)) << "the workload never ran its full check";
  EXPECT_TRUE(keep_progressing(restored.status(), 1s)) << "after the full check";
}

TEST(CheckpointNamespaces, IpcAndUtsContentsComeBack) {
  RoundTrip how;
  how.after_restore = full_check_after_restore;
  check_round_trip(c_workload("ipc"), how);
}

TEST(CheckpointNamespaces, IpcContentsComeBackAfterLeaveRunning) {
  RoundTrip how;
  how.leave_running = true;
  how.after_restore = full_check_after_restore;
  check_round_trip(c_workload("ipc"), how);
}

TEST(CheckpointNamespaces, ShowListsTheIpcObjects) {
  CheckpointEnv env;
  Container c(env, "ipc-show");
  ASSERT_TRUE(c.run(c_workload("ipc")));
  fs::path dir = env.image_dir("show");
  ASSERT_TRUE(c.dump(dir, {"--leave-running"}));
  auto objects = images::read_all<pb::IpcObject>(dir / "ipc.img", images::ImageType::Ipc);
  int shm = 0, sem = 0, msg = 0, mq = 0, sysctls = 0;
  for (const auto& o : objects) {
    shm += o.has_shm();
    sem += o.has_sem();
    msg += o.has_msg();
    mq += o.has_mqueue();
    sysctls += o.has_sysctl();
  }
  EXPECT_EQ(shm, 1);
  EXPECT_EQ(sem, 1);
  EXPECT_EQ(msg, 1);
  EXPECT_EQ(mq, 1);
  EXPECT_EQ(sysctls, 2) << "kernel/msgmnb and fs/mqueue/msg_max differ from a fresh namespace";
  auto r = env.stasis({"show", dir.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* text : {"\"file\": \"ipc.img\"", "\"name\": \"stasis-ipc\"", "\"kernel/msgmnb\"", "\"value\": \"32768\"",
                           "\"domainname\": \"ipc-domain\"", "\"hostname\": \"ipc-job\""})
    EXPECT_NE(r.out.find(text), std::string::npos) << text << " not in:\n" << r.out;
  // Reading the POSIX queue (taken out and put back) left the job's view unchanged.
  EXPECT_TRUE(keep_progressing(c.status(), 300ms));
}

// Segments the job keeps attached come back attached where they were, as the same segments:
// read-write by key, read-only, and one removed while attached.
TEST(CheckpointNamespaces, AttachedSegmentsComeBackAttached) { check_round_trip(c_workload("ipc_attached")); }

TEST(CheckpointNamespaces, AttachedSegmentsComeBackAfterLeaveRunning) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(c_workload("ipc_attached"), how);
}

// A restored job's namespace is dumped and restored again: the segment removed while attached
// stays removed and attached through both generations.
TEST(CheckpointNamespaces, AttachedSegmentsSecondGeneration) {
  check_generations(c_workload("ipc_attached"), 2);
}

// A segment of which the job maps only part cannot be attached again as it was: refused, the
// job untouched.
TEST(CheckpointNamespaces, PartlyMappedSegmentIsRefusedAndJobRunsOn) {
  CheckpointEnv env;
  Container c(env, "sysv-partial");
  ASSERT_TRUE(c.run(c_workload("ipc_attached", {"partial"})));
  fs::path dir = env.work() / "refused";
  ASSERT_FALSE(c.dump(dir));
  EXPECT_NE(c.last_output().find("maps part of SysV shared memory segment"), std::string::npos) << c.last_output();
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(keep_progressing(c.status(), 300ms));
}

// A job holding a POSIX queue descriptor open is refused (the descriptor looks like a regular
// file "/name" and would otherwise be restored as a file of that name).
TEST(CheckpointNamespaces, OpenMqueueDescriptorIsRefusedAndJobRunsOn) {
  CheckpointEnv env;
  Container c(env, "mq-held");
  ASSERT_TRUE(c.run(c_workload("ipc", {"hold-mq"})));
  fs::path dir = env.work() / "refused";
  ASSERT_FALSE(c.dump(dir));
  EXPECT_NE(c.last_output().find("POSIX message queue descriptor"), std::string::npos) << c.last_output();
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(keep_progressing(c.status(), 300ms));
}

// Under kernel.shm_rmid_forced the restored segments would die with the restorer's thread that
// created them: refused.
TEST(CheckpointNamespaces, ShmRmidForcedIsRefusedAndJobRunsOn) {
  CheckpointEnv env;
  Container c(env, "rmid-forced");
  ASSERT_TRUE(c.run(c_workload("ipc", {"rmid-forced"})));
  fs::path dir = env.work() / "refused";
  ASSERT_FALSE(c.dump(dir));
  EXPECT_NE(c.last_output().find("kernel.shm_rmid_forced"), std::string::npos) << c.last_output();
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(keep_progressing(c.status(), 300ms));
}

// An IPC sysctl this host does not accept fails the restore, which leaves nothing behind.
TEST(CheckpointNamespaces, RefusedSysctlFailsRestoreAndLeavesNothing) {
  CheckpointEnv env;
  fs::path dir = env.image_dir("bad-sysctl");
  fs::path status;
  {
    Container c(env, "ipc-orig");
    ASSERT_TRUE(c.run(c_workload("ipc")));
    ASSERT_TRUE(c.dump(dir));
    status = c.status();
  }
  auto objects = images::read_all<pb::IpcObject>(dir / "ipc.img", images::ImageType::Ipc);
  pb::IpcObject bad;
  bad.mutable_sysctl()->set_name("kernel/shmmni");
  bad.mutable_sysctl()->set_value("99999999");  // over IPCMNI
  objects.insert(objects.begin(), bad);
  {
    images::ImageWriter w(dir / "ipc.img", images::ImageType::Ipc);
    for (const auto& o : objects) w.write(o);
    w.close();
  }
  auto checkpoint = images::Checkpoint::open(dir);
  checkpoint.finalize(checkpoint.inventory());

  clear_status(status);
  const std::string name = env.unique_name("bad-sysctl");
  auto r = env.stasis({"restore", "-D", dir.string(), "--name", name, "-d"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("kernel/shmmni"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("99999999"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(env.root() / (name + ".state"))) << "state file left for " << name;
  for (const char* controller : {"freezer", "memory", "pids", "cpu", ""})
    EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup") / controller / launcher::cgroup_parent_for(env.root()) / name))
        << controller << " cgroup left for " << name;
  // No restored job writes its status.
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(read_status(status).kind, WorkloadStatus::Kind::kMissing) << read_status(status).raw;
}

}  // namespace
}  // namespace stasis::test
