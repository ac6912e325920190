// Bad input to run and the management commands: a clear message, a non-zero exit (2 for usage
// errors) and nothing left behind (no cgroup, state file or link).
#include <gtest/gtest.h>

#include "launcher/config.h"
#include "tests/launcher_test_util.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

void expect_nothing_left(const TempDir& root, const std::string& name) {
  EXPECT_TRUE(leftover_cgroups(name).empty()) << name;
  EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup/unified") / launcher::cgroup_parent_for(root.path()) / name));
  EXPECT_FALSE(fs::exists(root.path() / (name + ".state")));
  EXPECT_EQ(stasis_at(root, {"ps", "-a"}).out.find(name), std::string::npos);
}

struct BadRun {
  std::vector<std::string> options;
  int exit_code;
  std::string message;
};

TEST(LauncherErrors, BadRunOptions) {
  TempDir root;
  std::string name = unique_name("bad");
  ContainerGuard guard(root.path(), name);
  std::vector<BadRun> cases = {
      {{"--memory", "12Q"}, 2, "--memory: invalid size '12Q'"},
      {{"--memory", "-5"}, 2, "--memory: invalid size"},
      {{"--memory", "0"}, 2, "--memory: size must be greater than 0"},
      {{"--memory", "99999999999G"}, 2, "--memory: invalid size"},
      {{"--pids", "lots"}, 2, "--pids: invalid value 'lots'"},
      {{"--cpus", "-1"}, 2, "--cpus: invalid value '-1'"},
      {{"--cpus", "half"}, 2, "--cpus: invalid value 'half'"},
      {{"--cpuset", "zero"}, 2, "--cpuset 'zero'"},
      {{"--net", "veth", "--ip", "10.213.0.300/24"}, 2, "--ip: invalid address '10.213.0.300/24'"},
      {{"--net", "veth", "--ip", "10.213.0.2"}, 2, "expected A.B.C.D/PREFIX"},
      {{"--net", "veth", "--ip", "10.213.0.2/33"}, 2, "prefix must be"},
      {{"--net", "veth", "--ip", "10.213.0.0/24"}, 2, "network or broadcast"},
      {{"--net", "veth", "--ip", "10.213.0.1/24"}, 2, "the subnet's first address"},
      {{"--net", "veth", "--ip", "10.213.0.2/24", "--host-ip", "10.214.0.1"}, 2, "is not in the subnet"},
      {{"--net", "veth"}, 2, "--net veth needs --ip"},
      {{"--net", "loopback", "--ip", "10.213.0.2/24"}, 2, "only apply to --net veth"},
      {{"--net", "bogus"}, 2, "--net 'bogus'"},
      {{"--net", "bridge", "-p", "80"}, 2, "--publish: invalid port '80'"},
      {{"-p", "8080:80"}, 2, "--publish (-p) needs --net bridge"},
      {{"--cgroup-driver", "v3"}, 2, "unknown cgroup driver 'v3'"},
      {{"--env", "NOEQUALS"}, 2, "--env 'NOEQUALS'"},
      {{"--workdir", "relative"}, 2, "--workdir 'relative'"},
      {{"--rootfs", "/no/such/dir"}, 2, "--rootfs /no/such/dir"},
      {{"--cgroup-driver", "v2", "--device", "/dev/kmsg"}, 2, "--device needs the cgroup v1"},
      {{"--device", "/no/such/device"}, 1, "device /no/such/device"},
      {{"--workdir", "/no/such/dir"}, 1, "--workdir /no/such/dir"},
      {{"--log", "/no/such/dir/log"}, 1, "open /no/such/dir/log"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"run", "--name", name};
    args.insert(args.end(), c.options.begin(), c.options.end());
    args.insert(args.end(), {"--", "/bin/true"});
    auto r = stasis_at(root, args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.message << ": " << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << "expected '" << c.message << "' in: " << r.err;
    expect_nothing_left(root, name);
  }
  EXPECT_NE(run_command({"ip", "link", "show", launcher::host_veth_name(name)}).exit_code, 0);
}

TEST(LauncherErrors, BadNames) {
  TempDir root;
  for (std::string bad : std::vector<std::string>{"a/b", "..", "-x", std::string(70, 'n'), "sp ace"}) {
    auto r = stasis_at(root, {"run", "--name", bad, "--", "/bin/true"});
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_NE(r.err.find("--name"), std::string::npos) << r.err;
  }
}

TEST(LauncherErrors, MissingCommand) {
  TempDir root;
  std::string name = unique_name("nocmd");
  auto r = stasis_at(root, {"run", "--name", name});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("missing command"), std::string::npos) << r.err;
  expect_nothing_left(root, name);
  r = stasis_at(root, {"exec", name});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

TEST(LauncherErrors, UnknownName) {
  TempDir root;
  std::string name = unique_name("none");
  std::string message = "no container named " + name + " under " + root.path().string();
  for (std::vector<std::string> args : {std::vector<std::string>{"rm", name}, {"rm", "-f", name}, {"kill", name},
                                        {"freeze", name}, {"thaw", name}, {"exec", name, "--", "/bin/true"}}) {
    auto r = stasis_at(root, args);
    EXPECT_EQ(r.exit_code, 1) << args[0];
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
}

TEST(LauncherErrors, DuplicateNameRefused) {
  TempDir root;
  std::string name = unique_name("dup");
  ContainerGuard guard(root.path(), name);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "--", "/bin/sleep", "100"}).exit_code, 0);
  auto cgroups = leftover_cgroups(name);
  auto r = stasis_at(root, {"run", "--name", name, "--", "/bin/true"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("a container named " + name + " already exists"), std::string::npos) << r.err;
  // The first one is untouched.
  EXPECT_EQ(leftover_cgroups(name), cgroups);
  EXPECT_NE(stasis_at(root, {"ps", "-a"}).out.find("running"), std::string::npos);
}

TEST(LauncherErrors, BadSignal) {
  TempDir root;
  std::string name = unique_name("sig");
  ContainerGuard guard(root.path(), name);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "--", "/bin/sleep", "100"}).exit_code, 0);
  for (std::string bad : std::vector<std::string>{"FOO", "0", "999", "9x"}) {
    auto r = stasis_at(root, {"kill", name, "-s", bad});
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_NE(r.err.find("signal '" + bad + "'"), std::string::npos) << r.err;
  }
  EXPECT_NE(stasis_at(root, {"ps", "-a"}).out.find("running"), std::string::npos);
}

TEST(LauncherErrors, NotRoot) {
  TempDir root;
  std::string name = unique_name("user");
  fs::permissions(root.path(), fs::perms::all);
  auto r = run_command({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", stasis_binary(), "--root",
                        root.path().string(), "run", "--name", name, "--", "/bin/true"});
  if (r.exit_code == 126 || r.exit_code == 127) GTEST_SKIP() << "cannot run the binary as nobody: " << r.err;
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("needs root (running as uid 65534)"), std::string::npos) << r.err;
  expect_nothing_left(root, name);
}

TEST(LauncherErrors, CgroupHierarchyNotMounted) {
  TempDir root;
  TempDir fake_cgroup_root("stasis-nocgroup");
  std::string name = unique_name("nocg");
  for (std::string driver : std::vector<std::string>{"auto", "v1", "v2"}) {
    auto r = run_command({"env", "STASIS_CGROUP_ROOT=" + fake_cgroup_root.path().string(), stasis_binary(), "--root",
                          root.path().string(), "run", "--name", name, "--cgroup-driver", driver, "--", "/bin/true"});
    EXPECT_EQ(r.exit_code, 1) << driver;
    EXPECT_NE(r.err.find("not mounted"), std::string::npos) << r.err;
    expect_nothing_left(root, name);
  }
  EXPECT_TRUE(fs::is_empty(fake_cgroup_root.path()));
}

}  // namespace
}  // namespace stasis::test
