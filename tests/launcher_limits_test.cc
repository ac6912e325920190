// Resource limits, devices and freezing, enforced by the kernel for jobs of `stasis run`.
#include <gtest/gtest.h>

#include <thread>

#include "launcher/config.h"
#include "tests/launcher_test_util.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(LauncherLimits, MemoryLimitOomKillsAndPsSaysSo) {
  TempDir root;
  std::string name = unique_name("mem");
  ContainerGuard guard(root.path(), name);
  auto r = stasis_at(root, {"run", "--name", name, "--memory", "32M", "--", workload("launcher_alloc"), "256"});
  EXPECT_EQ(r.exit_code, 137) << r.out << r.err;
  EXPECT_EQ(r.out.find("survived"), std::string::npos);
  EXPECT_EQ(slurp(fs::path("/sys/fs/cgroup/memory") / launcher::cgroup_parent_for(root.path()) / name / "memory.limit_in_bytes"), "33554432\n");
  auto ps = stasis_at(root, {"ps", "-a"});
  EXPECT_NE(ps.out.find("oom-killed"), std::string::npos) << ps.out;
  EXPECT_NE(stasis_at(root, {"ps", "-a", "--json"}).out.find("\"oom_killed\": true"), std::string::npos);

  // A shell that survives the OOM kill of its child is not itself "oom-killed".
  std::string name3 = unique_name("mem");
  ContainerGuard guard3(root.path(), name3);
  r = stasis_at(root, {"run", "--name", name3, "--memory", "32M", "--", "/bin/sh", "-c",
                       workload("launcher_alloc") + " 256; echo after"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "after\n");
  EXPECT_NE(stasis_at(root, {"ps", "-a"}).out.find("exited (0, after an oom kill)"), std::string::npos)
      << stasis_at(root, {"ps", "-a"}).out;

  // The same program within its limit survives.
  std::string name2 = unique_name("mem");
  ContainerGuard guard2(root.path(), name2);
  r = stasis_at(root, {"run", "--rm", "--name", name2, "--memory", "128M", "--", workload("launcher_alloc"), "16"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "survived\n");
}

TEST(LauncherLimits, PidsLimitMakesForkFail) {
  TempDir root;
  std::string name = unique_name("pids");
  ContainerGuard guard(root.path(), name);
  // sh itself is one of the 4; the 4th sleep cannot be forked.
  auto r = stasis_at(root, {"run", "--rm", "--name", name, "--pids", "4", "--", "/bin/sh", "-c",
                            "for i in 1 2 3 4 5 6; do sleep 2 & done; "
                            "echo forked; kill $(jobs -p) 2>/dev/null; exit 0"});
  EXPECT_NE(r.err.find("Cannot fork"), std::string::npos) << r.out << r.err;
  // Without the limit, the same script forks them all.
  std::string name2 = unique_name("pids");
  ContainerGuard guard2(root.path(), name2);
  r = stasis_at(root, {"run", "--rm", "--name", name2, "--pids", "20", "--", "/bin/sh", "-c",
                       "for i in 1 2 3 4 5 6; do sleep 0.1 & done; wait; echo done"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "done\n");
}

int64_t cpu_usage_ns(const TempDir& root, const std::string& name) {
  return std::stoll(slurp(fs::path("/sys/fs/cgroup/cpuacct") / launcher::cgroup_parent_for(root.path()) / name / "cpuacct.usage"));
}

TEST(LauncherLimits, CpuQuotaRoughlyEnforced) {
  TempDir root;
  std::string name = unique_name("cpu");
  ContainerGuard guard(root.path(), name);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "--cpus", "0.3", "--", workload("launcher_spin"), "10"})
                .exit_code,
            0);
  EXPECT_EQ(slurp(fs::path("/sys/fs/cgroup/cpu") / launcher::cgroup_parent_for(root.path()) / name / "cpu.cfs_quota_us"), "30000\n");
  std::this_thread::sleep_for(milliseconds(200));
  auto t0 = std::chrono::steady_clock::now();
  int64_t u0 = cpu_usage_ns(root, name);
  std::this_thread::sleep_for(milliseconds(1500));
  int64_t u1 = cpu_usage_ns(root, name);
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double share = static_cast<double>(u1 - u0) / 1e9 / wall;
  // 0.3 of a CPU; an unlimited spin would get close to 1.0. Others share this machine, so the
  // lower bound is loose.
  EXPECT_LT(share, 0.45) << "share " << share;
  EXPECT_GT(share, 0.1) << "share " << share;
}

// The counter workload writes "ok <n>" every 10 ms.
long read_count(const fs::path& status) {
  std::string s = slurp(status);
  return s.rfind("ok ", 0) == 0 ? std::stol(s.substr(3)) : -1;
}

void freeze_thaw(const std::string& driver) {
  TempDir root;
  std::string name = unique_name("frz" + driver);
  ContainerGuard guard(root.path(), name);
  fs::path status = root.path() / "status";
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "--cgroup-driver", driver, "--", workload("counter"),
                             status.string()})
                .exit_code,
            0);
  ASSERT_TRUE(wait_until([&] { return read_count(status) > 2; }, seconds(5)));
  auto r = stasis_at(root, {"freeze", name});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(stasis_at(root, {"ps", "-a"}).out.find("frozen"), std::string::npos);
  long frozen_at = read_count(status);
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(read_count(status), frozen_at) << "progress while frozen";
  r = stasis_at(root, {"thaw", name});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(wait_until([&] { return read_count(status) > frozen_at + 5; }, seconds(5)));
  EXPECT_NE(stasis_at(root, {"ps", "-a"}).out.find("running"), std::string::npos);
  // rm -f works on a frozen container too.
  ASSERT_EQ(stasis_at(root, {"freeze", name}).exit_code, 0);
  r = stasis_at(root, {"rm", "-f", name});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(leftover_cgroups(name).empty());
  EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup/unified") / launcher::cgroup_parent_for(root.path()) / name));
}

TEST(LauncherLimits, FreezeThawV1) { freeze_thaw("v1"); }
TEST(LauncherLimits, FreezeThawV2) { freeze_thaw("v2"); }

TEST(LauncherLimits, V2LimitWithoutControllerFailsClearly) {
  TempDir root;
  std::string name = unique_name("v2lim");
  ContainerGuard guard(root.path(), name);
  for (auto [option, value, controller] : {std::tuple{"--memory", "64M", "memory"}, {"--pids", "10", "pids"},
                                           {"--cpus", "0.5", "cpu"}}) {
    auto r = stasis_at(root, {"run", "--name", name, "--cgroup-driver", "v2", option, value, "--", "/bin/true"});
    EXPECT_EQ(r.exit_code, 1) << option;
    EXPECT_NE(r.err.find(std::string("controller '") + controller + "' is not enabled"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup/unified") / launcher::cgroup_parent_for(root.path()) / name));
    EXPECT_FALSE(fs::exists(root.path() / (name + ".state")));
  }
}

TEST(LauncherLimits, DevicesDeniedUnlessAllowed) {
  TempDir root;
  std::string name = unique_name("dev");
  ContainerGuard guard(root.path(), name);
  // /dev/kmsg (c 1:11) is not in the default list; /dev/null is.
  auto r = stasis_at(root, {"run", "--rm", "--name", name, "--", "/bin/sh", "-c",
                            "echo x > /dev/null && echo null-ok; head -c0 /dev/urandom && echo urandom-ok; "
                            "head -c0 /dev/kmsg"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "null-ok\nurandom-ok\n");
  EXPECT_NE(r.err.find("Operation not permitted"), std::string::npos) << r.err;

  std::string name2 = unique_name("dev");
  ContainerGuard guard2(root.path(), name2);
  r = stasis_at(root, {"run", "--rm", "--name", name2, "--device", "/dev/kmsg", "--", "/bin/sh", "-c",
                       "head -c0 /dev/kmsg && echo kmsg-ok"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "kmsg-ok\n");
}

TEST(LauncherLimits, CpusetIsApplied) {
  TempDir root;
  std::string name = unique_name("cpuset");
  ContainerGuard guard(root.path(), name);
  auto r = stasis_at(root, {"run", "--name", name, "--cpuset", "0", "--", "/bin/sh", "-c",
                            "grep Cpus_allowed_list /proc/self/status"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\t0\n"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace stasis::test
