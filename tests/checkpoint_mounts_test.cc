// The mounts a container's job made inside its mount namespace come back with it: a tmpfs with
// its files (contents, owners, modes, times, links), binds of a host directory and of a
// directory of that tmpfs (read-only), a proc instance with its options, each in the same
// order with the same flags. A bind source missing at restore fails the restore before anything
// starts; a file system restore cannot recreate (an overlay) is refused at dump time with the
// job left running.
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "images/checkpoint.h"

#include "images/image_file.h"
#include "mounts.pb.h"
#include "restore/mounts.h"
#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

fs::path mounts_of(const fs::path& status) { return status.string() + ".mnt"; }

// Before the start the restorer checks the job's open and mapped files where this host shows
// them: a file on a mount the job made (its tmpfs, or a bind of a place on it) is out of sight
// and made anew, a file under a bind of a host directory is in that directory.
TEST(CheckpointMounts, FilesAreCheckedWhereTheHostShowsThem) {
  restore::MountPlan plan;
  auto add = [&](pb::MountEntry::Kind kind, const std::string& at, const std::string& source, bool on_job) {
    pb::MountEntry& m = plan.mounts.emplace_back();
    m.set_kind(kind);
    m.set_mount_point(at);
    m.set_source(source);
    m.set_source_on_job_mount(on_job);
  };
  add(pb::MountEntry::TMPFS, "/j/tmpfs", "", false);
  add(pb::MountEntry::BIND, "/j/tmpfs/view", "/j/tmpfs/dir", true);
  add(pb::MountEntry::BIND, "/j/bind", "/host/src", false);
  add(pb::MountEntry::PROC, "/j/proc", "", false);
  EXPECT_EQ(restore::path_on_host(plan, "", "/j/tmpfs/fixed"), "");
  EXPECT_EQ(restore::path_on_host(plan, "", "/j/tmpfs/view/inner"), "");
  EXPECT_EQ(restore::path_on_host(plan, "", "/j/proc/self/status"), "");
  EXPECT_EQ(restore::path_on_host(plan, "", "/j/bind/log"), "/host/src/log");
  EXPECT_EQ(restore::path_on_host(plan, "", "/j/tmpfsother/x"), "/j/tmpfsother/x");
  EXPECT_EQ(restore::path_on_host(plan, "/rootfs", "/etc/passwd"), "/rootfs/etc/passwd");
}

TEST(CheckpointMounts, TmpfsBindAndProcComeBackWithContentsAndOptions) {
  RoundTrip how;
  how.after_restore = [](Container& restored) {
    // The host directory got the restored job's writes through the bind: 8 bytes an iteration.
    std::uint64_t p = 0;
    ASSERT_TRUE(wait_for_progress(restored.status(), 0, 10s, &p));
    const auto size = fs::file_size(mounts_of(restored.status()) / "src" / "log");
    EXPECT_GE(size, p * 8);
    // The job's mounts stayed inside its namespace.
    std::ifstream host("/proc/self/mountinfo");
    std::string text((std::istreambuf_iterator<char>(host)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text.find(mounts_of(restored.status()).string()), std::string::npos);
  };
  check_round_trip(c_workload("mounts"), how);
}

TEST(CheckpointMounts, DumpRecordsTheJobsMountsInOrder) {
  CheckpointEnv env;
  Container c(env, "mounts-show");
  ASSERT_TRUE(c.run(c_workload("mounts")));
  fs::path dir = env.image_dir("show");
  ASSERT_TRUE(c.dump(dir, {"--leave-running"}));
  auto mounts = images::read_all<pb::MountEntry>(dir / "mounts.img", images::ImageType::Mounts);
  ASSERT_EQ(mounts.size(), 4u);
  const std::string base = mounts_of(c.status()).string();
  EXPECT_EQ(mounts[0].mount_point(), base + "/tmpfs");
  EXPECT_EQ(mounts[0].kind(), pb::MountEntry::TMPFS);
  EXPECT_EQ(mounts[1].mount_point(), base + "/tmpfs/view");
  EXPECT_EQ(mounts[1].kind(), pb::MountEntry::BIND);
  EXPECT_TRUE(mounts[1].source_on_job_mount());
  EXPECT_EQ(mounts[1].source(), base + "/tmpfs/dir");
  EXPECT_EQ(mounts[2].mount_point(), base + "/bind");
  EXPECT_EQ(mounts[2].source(), base + "/src");
  EXPECT_FALSE(mounts[2].source_on_job_mount());
  EXPECT_EQ(mounts[3].kind(), pb::MountEntry::PROC);
  auto files = images::read_all<pb::TmpfsFile>(dir / "tmpfs.img", images::ImageType::Tmpfs);
  bool fixed = false;
  for (const auto& f : files)
    if (f.path() == "/fixed") fixed = f.data() == "fixed contents\n" && f.uid() == 1000 && (f.mode() & 07777) == 0640;
  EXPECT_TRUE(fixed);
  CommandResult show = env.stasis({"show", dir.string()});
  EXPECT_NE(show.out.find("\"kind\": \"TMPFS\""), std::string::npos) << show.out.substr(0, 2000);
  EXPECT_TRUE(keep_progressing(c.status(), 300ms));
}

// A tmpfs larger than --tmpfs-limit is refused, the job left running.
TEST(CheckpointMounts, TmpfsOverTheLimitIsRefusedAndJobRunsOn) {
  CheckpointEnv env;
  Container c(env, "mounts-limit");
  ASSERT_TRUE(c.run(c_workload("mounts")));
  fs::path dir = env.work() / "refused";
  ASSERT_FALSE(c.dump(dir, {"--tmpfs-limit", "16"}));
  EXPECT_NE(c.last_output().find("--tmpfs-limit"), std::string::npos) << c.last_output();
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(keep_progressing(c.status(), 300ms));
}

TEST(CheckpointMounts, OverlayIsRefusedAndJobRunsOn) {
  CheckpointEnv env;
  Container c(env, "mounts-overlay");
  ASSERT_TRUE(c.run(c_workload("mounts", {"overlay"})));
  fs::path dir = env.work() / "refused";
  ASSERT_FALSE(c.dump(dir));
  const std::string merged = mounts_of(c.status()).string() + "/merged";
  EXPECT_NE(c.last_output().find(merged + " (type overlay"), std::string::npos) << c.last_output();
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(keep_progressing(c.status(), 300ms));
}

// The host directory behind the job's bind mount is gone: the restore says so and starts
// nothing (no container, no process, no cgroup).
TEST(CheckpointMounts, MissingBindSourceFailsRestoreAndLeavesNothing) {
  CheckpointEnv env;
  fs::path dir = env.image_dir("missing-source");
  fs::path status;
  std::string cgroup, orig_name;
  {
    Container c(env, "mounts-orig");
    ASSERT_TRUE(c.run(c_workload("mounts")));
    status = c.status();
    orig_name = c.name();
    cgroup = c.cgroup_path("unified").value_or(c.cgroup_path("memory").value_or(""));
    ASSERT_TRUE(c.dump(dir));
    ASSERT_TRUE(c.wait_gone());
  }
  const fs::path src = mounts_of(status) / "src";
  fs::rename(src, mounts_of(status) / "src-moved");
  Container r(env, "mounts-missing");
  ASSERT_FALSE(r.restore(dir, status));
  EXPECT_NE(r.last_output().find("bind mount at " + (mounts_of(status) / "bind").string()), std::string::npos)
      << r.last_output();
  EXPECT_NE(r.last_output().find(src.string() + " on this host), which is missing"), std::string::npos)
      << r.last_output();
  CommandResult ps = env.stasis({"ps", "--json"});
  EXPECT_EQ(ps.out.find(r.name()), std::string::npos) << ps.out;
  if (!cgroup.empty()) {
    // The cgroup the restore would have made: the dumped container's, under the new name.
    std::string would = cgroup;
    would.replace(would.rfind(orig_name), orig_name.size(), r.name());
    EXPECT_FALSE(fs::exists(would)) << would;
  }
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream cmd(e.path() / "cmdline");
    std::string line((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
    EXPECT_EQ(line.find(status.string()), std::string::npos) << "pid " << name << " is left: " << line;
  }
}


// A source that cannot be checked before the start (it lies on the job's own tmpfs) and turns
// out missing in the container: the restore fails there and removes everything it made.
TEST(CheckpointMounts, MissingSourceInsideTheContainerFailsRestoreAndLeavesNothing) {
  CheckpointEnv env;
  fs::path dir = env.image_dir("missing-inside");
  fs::path status;
  {
    Container c(env, "mounts-inside");
    ASSERT_TRUE(c.run(c_workload("mounts")));
    status = c.status();
    ASSERT_TRUE(c.dump(dir));
    ASSERT_TRUE(c.wait_gone());
  }
  auto mounts = images::read_all<pb::MountEntry>(dir / "mounts.img", images::ImageType::Mounts);
  ASSERT_EQ(mounts.size(), 4u);
  ASSERT_TRUE(mounts[1].source_on_job_mount());
  mounts[1].set_source(mounts[1].source() + "-gone");
  {
    images::ImageWriter w(dir / "mounts.img", images::ImageType::Mounts);
    for (const auto& m : mounts) w.write(m);
    w.close();
  }
  auto checkpoint = images::Checkpoint::open(dir);
  checkpoint.finalize(checkpoint.inventory());

  clear_status(status);
  const std::string name = env.unique_name("missing-inside");
  auto r = env.stasis({"restore", "-D", dir.string(), "--name", name, "-d"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("bind mount at " + mounts[1].mount_point()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(mounts[1].source() + " is missing"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(env.root() / (name + ".state"))) << "state file left for " << name;
  for (const char* controller : {"freezer", "memory", "pids", "cpu", ""})
    EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup") / controller / "stasis" / name))
        << controller << " cgroup left for " << name;
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(read_status(status).kind, WorkloadStatus::Kind::kMissing) << read_status(status).raw;
  std::ifstream host("/proc/self/mountinfo");
  std::string text((std::istreambuf_iterator<char>(host)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find(mounts_of(status).string()), std::string::npos) << "a mount was left on the host";
}

}  // namespace
}  // namespace stasis::test
