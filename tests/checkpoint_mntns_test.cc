// A process dumped by pid that lives in a mount namespace and root of its own (a runc
// container, `unshare -m` + pivot_root) comes back in that root, with its mount tree remade in
// the same order with the same options: binds of host directories and files, a tmpfs with its
// files, a bind of a directory of that tmpfs, a proc instance; a file of its root alone that
// it holds open is found there. A root the dump cannot place on
// the host (a chroot into a plain directory of another namespace) is refused, the job left
// running. container.img says whether the job had a network namespace of its own.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>

#include "container.pb.h"
#include "images/image_file.h"
#include "mounts.pb.h"
#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

std::string mountinfo_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/mountinfo");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The job's process in a restored container: PID 1's only child, or PID 1 itself.
pid_t job_of(pid_t init) {
  std::ifstream children("/proc/" + std::to_string(init) + "/task/" + std::to_string(init) + "/children");
  pid_t job = -1;
  return children >> job ? job : init;
}

TEST(CheckpointMntns, JobInItsOwnRootComesBackThere) {
  CheckpointEnv env;
  HostProcess host;
  const fs::path status = env.status_path("mntns");
  ASSERT_TRUE(host.start(c_workload("mntns"), status)) << host.log_tail();
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(status, 0, 10s, &n)) << host.log_tail();
  const fs::path images = env.image_dir("mntns");
  ASSERT_TRUE(env.dump_pid(host.pid(), images)) << host.log_tail();
  ASSERT_TRUE(host.wait_exit(20s)) << "dump --pid without --leave-running must stop the process";

  // The tree, root first, as the job saw it.
  auto mounts = images::read_all<pb::MountEntry>(images / "mounts.img", images::ImageType::Mounts);
  ASSERT_GE(mounts.size(), 8u);
  EXPECT_TRUE(mounts[0].root());
  EXPECT_EQ(mounts[0].mount_point(), "/");
  EXPECT_EQ(mounts[0].host_source(), status.string() + ".root");
  std::map<std::string, const pb::MountEntry*> at;
  for (const auto& m : mounts) at[m.mount_point()] = &m;
  ASSERT_TRUE(at.count("/usr") && at.count("/data") && at.count("/data/ro") && at.count("/proc") && at.count("/dev/null"));
  EXPECT_EQ(at["/usr"]->kind(), pb::MountEntry::BIND);
  EXPECT_EQ(at["/usr"]->host_source(), "/usr");
  EXPECT_EQ(at["/bin"]->host_source(), "/usr/bin");
  EXPECT_EQ(at["/data"]->kind(), pb::MountEntry::TMPFS);
  EXPECT_EQ(at["/data/ro"]->kind(), pb::MountEntry::BIND);
  EXPECT_TRUE(at["/data/ro"]->source_on_job_mount());
  EXPECT_EQ(at["/data/ro"]->source(), "/data/sub");
  EXPECT_EQ(at["/proc"]->kind(), pb::MountEntry::PROC);
  EXPECT_EQ(at["/dev/null"]->host_source(), "/dev/null");
  EXPECT_FALSE(at["/dev/null"]->directory());
  // /kept, which it holds open, is not at that path on the host: restore finds it through
  // the job's root.
  ASSERT_FALSE(fs::exists("/kept"));
  pb::ContainerConfig config;
  images::read_single(images / "container.img", images::ImageType::Container, config);
  EXPECT_EQ(config.net().mode(), "host");  // it shared the host's network namespace

  n = std::max(n, read_status(status).progress);
  clear_status(status);
  Container restored(env, "mntns");
  ASSERT_TRUE(restored.restore(images, status)) << restored.last_output();
  // The workload checks its root and mounts each iteration.
  ASSERT_TRUE(wait_for_progress(status, n, 30s, &n, n));
  ASSERT_TRUE(keep_progressing(status, 1000ms));
  auto init = restored.host_pid();
  ASSERT_TRUE(init.has_value());
  const std::string info = mountinfo_of(job_of(*init));
  // Same order as dumped.
  size_t last = 0;
  for (const char* point : {" / ", " /bin ", " /usr ", " /data ", " /data/ro ", " /proc ", " /dev/null "}) {
    size_t found = info.find(point, last);
    EXPECT_NE(found, std::string::npos) << point << " missing or out of order in\n" << info;
    if (found != std::string::npos) last = found;
  }
  // Nothing of the job's tree reached the host.
  EXPECT_EQ(mountinfo_of(getpid()).find(status.string() + ".root/data"), std::string::npos);
}

// The job's root is gone from the host at restore: refused before anything starts, naming it.
TEST(CheckpointMntns, MissingRootFailsRestoreAndLeavesNothing) {
  CheckpointEnv env;
  HostProcess host;
  const fs::path status = env.status_path("gone");
  ASSERT_TRUE(host.start(c_workload("mntns"), status)) << host.log_tail();
  ASSERT_TRUE(wait_for_progress(status, 0, 10s)) << host.log_tail();
  const fs::path images = env.image_dir("gone");
  ASSERT_TRUE(env.dump_pid(host.pid(), images)) << host.log_tail();
  ASSERT_TRUE(host.wait_exit(20s));
  const fs::path root = status.string() + ".root";
  fs::rename(root, env.work() / "elsewhere");
  Container restored(env, "gone");
  EXPECT_FALSE(restored.restore(images, status));
  EXPECT_NE(restored.last_output().find(root.string() + " of this host, which is missing"), std::string::npos)
      << restored.last_output();
  EXPECT_EQ(env.stasis({"ps", "-a"}).out.find(restored.name()), std::string::npos);
}

TEST(CheckpointMntns, ChrootIntoAPlainDirectoryIsRefusedAndJobRunsOn) {
  CheckpointEnv env;
  HostProcess host;
  const fs::path status = env.status_path("chroot");
  ASSERT_TRUE(host.start(c_workload("mntns", {"chroot"}), status)) << host.log_tail();
  ASSERT_TRUE(wait_for_progress(status, 0, 10s)) << host.log_tail();
  const fs::path images = env.work() / "refused";
  CommandResult r = env.stasis({"dump", "--pid", std::to_string(host.pid()), "-D", images.string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("pid " + std::to_string(host.pid())), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("mount namespace mnt:["), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("bind-mount the directory onto itself"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(images));
  EXPECT_TRUE(keep_progressing(status, 300ms));
}

// A job with a network namespace of its own is not restored in the host's (container.img
// said `net: host` for every dump by pid).
TEST(CheckpointMntns, OwnNetworkNamespaceIsRecordedAsTheJobsOwn) {
  CheckpointEnv env;
  HostProcess host;
  Workload w = c_workload("counter");
  w.program.insert(w.program.begin(), {"/usr/bin/unshare", "--net", "--"});
  const fs::path status = env.status_path("netns");
  ASSERT_TRUE(host.start(w, status)) << host.log_tail();
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(status, 0, 10s, &n));
  const fs::path images = env.image_dir("netns");
  ASSERT_TRUE(env.dump_pid(host.pid(), images)) << host.log_tail();
  ASSERT_TRUE(host.wait_exit(20s));
  pb::ContainerConfig config;
  images::read_single(images / "container.img", images::ImageType::Container, config);
  EXPECT_EQ(config.net().mode(), "loopback");
  n = std::max(n, read_status(status).progress);
  clear_status(status);
  Container restored(env, "netns");
  ASSERT_TRUE(restored.restore(images, status)) << restored.last_output();
  ASSERT_TRUE(wait_for_progress(status, n, 30s, &n, n));
  auto init = restored.host_pid();
  ASSERT_TRUE(init.has_value());
  EXPECT_NE(namespace_id(job_of(*init), "net"), namespace_id(getpid(), "net"));
}

// runc's container, checkpointed by runc through stasis, restored by `stasis restore`: the
// counter goes on in its own root (the bundle's rootfs), with runc's mount tree.
TEST(CheckpointMntns, RuncContainerRestoredByStasisCountsOnInItsRoot) {
  if (run_command({"sh", "-c", "command -v runc"}).exit_code != 0)
    GTEST_SKIP() << "runc is not installed (scripts/setup installs Debian's runc)";
  CheckpointEnv env;
  const fs::path bundle = env.work() / "bundle";
  write_runc_counter_bundle(bundle, "mntns-test");
  const fs::path rootfs = bundle / "rootfs";
  const std::string id = "stasis-mntns-test-" + std::to_string(::getpid());
  struct Deleted {
    std::string id;
    ~Deleted() { run_command({"runc", "delete", "-f", id}); }
  } deleted{id};
  ASSERT_EQ(run_command({"sh", "-c", "exec runc run -d -b " + bundle.string() + " " + id + " </dev/null >/dev/null 2>&1"})
                .exit_code,
            0);
  auto counter = [&] {
    std::ifstream in(rootfs / "state/counter");
    long v = 0;
    return in >> v ? v : 0L;
  };
  ASSERT_TRUE(wait_until([&] { return counter() > 0; }, 20s));
  const fs::path images = env.image_dir("runc");
  auto r = run_command({"runc", "--criu", stasis_binary(), "checkpoint", "--leave-running", "--image-path",
                        images.string(), id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  run_command({"runc", "delete", "-f", id});
  const long at_kill = counter();

  Container restored(env, "runc");
  ASSERT_TRUE(restored.restore(images, env.status_path("runc"))) << restored.last_output();
  // It writes its counter into the bundle's rootfs again, from where it was dumped.
  ASSERT_TRUE(wait_until([&] { return counter() != at_kill; }, 10s));
  const long first = counter();
  ASSERT_TRUE(wait_until([&] { return counter() > first + 5; }, 10s));
  auto init = restored.host_pid();
  ASSERT_TRUE(init.has_value());
  const pid_t job = job_of(*init);
  const std::string info = mountinfo_of(job);
  EXPECT_NE(info.find(rootfs.string() + " / "), std::string::npos) << info;
  EXPECT_NE(info.find(" /proc/sys ro,"), std::string::npos) << info;
  EXPECT_NE(info.find(" /sys/firmware ro,"), std::string::npos) << info;
  EXPECT_NE(info.find(" /usr ro,"), std::string::npos) << info;
  EXPECT_NE(namespace_id(job, "net"), namespace_id(getpid(), "net"));
}

}  // namespace
}  // namespace stasis::test
