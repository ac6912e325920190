// common/cgroup.h on the real cgroup file systems of this machine (v1 controllers and the v2
// unified hierarchy without controllers).
#include "common/cgroup.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "common/error.h"
#include "tests/launcher_test_util.h"

namespace stasis {
namespace {

namespace fs = std::filesystem;
using test::slurp;
using test::unique_name;

// A child that just sleeps; killed and reaped on destruction.
struct Sleeper {
  pid_t pid;
  Sleeper() {
    pid = fork();
    if (pid == 0) {
      for (;;) pause();
    }
  }
  ~Sleeper() {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
};

// The tests' cgroups go under a parent of this test process's own (not the default "stasis",
// which stasis keeps for every container of the default root): destroy() takes such a
// "stasis-*" parent with its last cgroup, and TestParent removes what a failed create left.
std::string test_parent() { return "stasis-cgtest-" + std::to_string(::getpid()); }

Cgroup create_cgroup(CgroupDriver driver, const std::string& name, const CgroupLimits& limits = {},
                     const std::vector<std::string>& extra_devices = {}) {
  return Cgroup::create(driver, Cgroup::plan(driver, test_parent(), name, limits), limits, extra_devices);
}

struct TestParent {
  ~TestParent() {
    std::error_code ec;
    for (const auto& hierarchy : fs::directory_iterator("/sys/fs/cgroup", ec))
      ::rmdir((hierarchy.path() / test_parent()).c_str());
  }
};

// Removes the cgroup whatever happens.
struct Remover {
  const Cgroup& cg;
  ~Remover() {
    try {
      cg.thaw();
      cg.kill_all();
      cg.destroy();
    } catch (const Error&) {
    }
  }
};

TEST(Cgroup, V1CreateLimitsFreezeKillDestroy) {
  std::string name = unique_name("cg");
  CgroupLimits limits;
  limits.memory_max = 64 << 20;
  limits.cpus = 0.25;
  limits.pids_max = 7;
  limits.cpuset = "0";
  TestParent parent;
  Cgroup cg = create_cgroup(CgroupDriver::V1, name, limits, {"c 1:11"});
  Remover remover{cg};
  for (const char* c : {"memory", "cpu", "pids", "cpuset", "freezer", "devices"}) {
    ASSERT_EQ(cg.paths().at(c), "/sys/fs/cgroup/" + std::string(c) + "/" + test_parent() + "/" + name);
  }
  EXPECT_EQ(slurp(cg.paths().at("memory") + "/memory.limit_in_bytes"), "67108864\n");
  EXPECT_EQ(slurp(cg.paths().at("cpu") + "/cpu.cfs_quota_us"), "25000\n");
  EXPECT_EQ(slurp(cg.paths().at("pids") + "/pids.max"), "7\n");
  EXPECT_EQ(slurp(cg.paths().at("cpuset") + "/cpuset.cpus"), "0\n");
  std::string devices = slurp(cg.paths().at("devices") + "/devices.list");
  EXPECT_NE(devices.find("c 1:3 rwm"), std::string::npos) << devices;
  EXPECT_NE(devices.find("c 1:11 rwm"), std::string::npos) << devices;
  EXPECT_EQ(devices.find("a *:* rwm"), std::string::npos) << devices;

  Sleeper child;
  cg.add_process(child.pid);
  EXPECT_EQ(cg.processes(), std::vector<pid_t>{child.pid});
  EXPECT_EQ(cg.threads(), std::vector<pid_t>{child.pid});
  EXPECT_FALSE(cg.frozen());
  {
    CgroupFreeze freeze(cg);
    EXPECT_TRUE(cg.frozen());
    EXPECT_EQ(slurp(cg.paths().at("freezer") + "/freezer.state"), "FROZEN\n");
  }
  EXPECT_FALSE(cg.frozen());

  // Reopen from recorded paths, as other commands do.
  Cgroup again = Cgroup::open(CgroupDriver::V1, cg.paths());
  again.freeze();
  again.kill_all();  // must work on a frozen cgroup too
  int status = 0;
  EXPECT_EQ(waitpid(child.pid, &status, 0), child.pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  again.destroy();
  for (const auto& [c, path] : cg.paths()) EXPECT_FALSE(fs::exists(path)) << path;
}

// A parent of several levels (--cgroup-parent) is made as needed, cpuset levels with their
// parent's CPUs and memory nodes, and is kept: only a direct parent named "stasis-*" goes with
// its last container.
TEST(Cgroup, NestedParentIsMadeAndKept) {
  const std::string top = "stasis-cgtest-" + std::to_string(::getpid());
  const std::string parent = "/" + top + "//inner/";
  std::string name = unique_name("cg");
  CgroupLimits limits;
  limits.cpuset = "0";
  auto planned = Cgroup::plan(CgroupDriver::V1, parent, name, limits);
  EXPECT_EQ(planned.at("cpuset"), "/sys/fs/cgroup/cpuset/" + top + "/inner/" + name);
  {
    Cgroup first = Cgroup::create(CgroupDriver::V1, planned, limits);
    Remover remover{first};
    Cgroup second = Cgroup::create(CgroupDriver::V1, Cgroup::plan(CgroupDriver::V1, parent, name + "b", limits), limits);
    Remover remover2{second};
    EXPECT_EQ(slurp(planned.at("cpuset") + "/cpuset.cpus"), "0\n");
    EXPECT_FALSE(slurp("/sys/fs/cgroup/cpuset/" + top + "/inner/cpuset.mems").empty());
    EXPECT_TRUE(fs::exists(planned.at("freezer")));
  }
  // "inner" is not ours to remove; the test removes what is left of its own tree.
  for (const char* c : {"memory", "pids", "cpuset", "freezer", "devices"}) {
    fs::path inner = fs::path("/sys/fs/cgroup") / c / top / "inner";
    EXPECT_TRUE(fs::exists(inner)) << inner;
    ::rmdir(inner.c_str());
    ::rmdir(inner.parent_path().c_str());
  }
  EXPECT_THROW(Cgroup::plan(CgroupDriver::V1, "a/../b", name, {}), UsageError);
  EXPECT_THROW(Cgroup::plan(CgroupDriver::V1, "//", name, {}), UsageError);
  EXPECT_EQ(normalize_cgroup_parent("/x//y/"), "x/y");
}

TEST(Cgroup, CreateRefusesAnExistingCgroupAndLeavesItAlone) {
  std::string name = unique_name("cg");
  TestParent parent;
  Cgroup cg = create_cgroup(CgroupDriver::V1, name);
  Remover remover{cg};
  try {
    create_cgroup(CgroupDriver::V1, name);
    FAIL() << "second create succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
  }
  for (const auto& [c, path] : cg.paths()) EXPECT_TRUE(fs::exists(path)) << path;
}

TEST(Cgroup, V2FreezeAndKill) {
  std::string name = unique_name("cg2");
  TestParent parent;
  Cgroup cg = create_cgroup(CgroupDriver::V2, name);
  Remover remover{cg};
  EXPECT_EQ(cg.paths().at("unified"), "/sys/fs/cgroup/unified/" + test_parent() + "/" + name);
  Sleeper child;
  cg.add_process(child.pid);
  EXPECT_EQ(cg.processes(), std::vector<pid_t>{child.pid});
  cg.freeze();
  EXPECT_TRUE(cg.frozen());
  cg.thaw();
  EXPECT_FALSE(cg.frozen());
  cg.kill_all();
  EXPECT_EQ(waitpid(child.pid, nullptr, 0), child.pid);
  cg.destroy();
  EXPECT_FALSE(fs::exists(cg.paths().at("unified")));
}

TEST(Cgroup, V2LimitNamesMissingControllerAndLeavesNothing) {
  std::string name = unique_name("cg2");
  CgroupLimits limits;
  limits.pids_max = 5;
  TestParent parent;
  try {
    create_cgroup(CgroupDriver::V2, name, limits);
    FAIL() << "v2 pids limit without the pids controller succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("controller 'pids' is not enabled"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists("/sys/fs/cgroup/unified/" + test_parent() + "/" + name));
  EXPECT_THROW(create_cgroup(CgroupDriver::V2, name, {}, {"/dev/kmsg"}), UsageError);
}

TEST(Cgroup, DriversAndDeviceRules) {
  EXPECT_EQ(detect_cgroup_driver(), CgroupDriver::V1);  // this machine
  EXPECT_EQ(parse_cgroup_driver("auto"), CgroupDriver::V1);
  EXPECT_EQ(parse_cgroup_driver("v2"), CgroupDriver::V2);
  EXPECT_THROW(parse_cgroup_driver("v9"), UsageError);
  EXPECT_STREQ(cgroup_driver_name(CgroupDriver::V2), "v2");
  EXPECT_EQ(device_rule("/dev/null"), "c 1:3 rwm");
  EXPECT_EQ(device_rule("c 10:200"), "c 10:200 rwm");
  EXPECT_EQ(device_rule("b 8:* r"), "b 8:* r");
  EXPECT_THROW(device_rule("/no/such/dev"), Error);
  EXPECT_THROW(device_rule("/etc/passwd"), Error);
}

TEST(Cgroup, NotMountedIsAClearError) {
  test::TempDir fake("stasis-cgroot");
  setenv("STASIS_CGROUP_ROOT", fake.path().c_str(), 1);
  std::string name = unique_name("cg");
  try {
    Cgroup::create(CgroupDriver::V1, name, {});
    FAIL() << "create without hierarchies succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("controller 'memory' is not mounted at " + fake.path().string()),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(detect_cgroup_driver(), Error);
  unsetenv("STASIS_CGROUP_ROOT");
  EXPECT_TRUE(fs::is_empty(fake.path()));
}

}  // namespace
}  // namespace stasis
