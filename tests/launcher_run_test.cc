// `stasis run` and the management commands, end to end with real namespaces and cgroups.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fstream>

#include "tests/launcher_test_util.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

TEST(LauncherRun, JobIsPid1AndSeesOnlyItsOwnProcesses) {
  TempDir root;
  std::string name = unique_name("pid");
  ContainerGuard guard(root.path(), name);
  auto r = stasis_at(root, {"run", "--name", name, "--", "/bin/sh", "-c",
                            "echo pid=$$; ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("pid=1\n"), std::string::npos) << r.out;
  // sh, ls and grep (and perhaps cat): nothing of the host.
  std::istringstream lines(r.out);
  std::string first, count;
  std::getline(lines, first);
  std::getline(lines, count);
  EXPECT_LE(std::stoi(count), 4) << r.out;
  EXPECT_NE(r.out.find("/bin/sh -c"), std::string::npos) << r.out;
}

TEST(LauncherRun, HostnameEnvWorkdir) {
  TempDir root;
  std::string name = unique_name("uts");
  ContainerGuard guard(root.path(), name);
  auto r = stasis_at(root, {"run", "--name", name, "--hostname", "box1", "--env", "FOO=bar baz", "--env", "X=1",
                            "--workdir", "/usr", "--", "/bin/sh", "-c", "hostname; echo \"$FOO/$X\"; pwd"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "box1\nbar baz/1\n/usr\n");
  // Default hostname: the container's name.
  std::string name2 = unique_name("uts");
  ContainerGuard guard2(root.path(), name2);
  r = stasis_at(root, {"run", "--name", name2, "--", "/bin/hostname"});
  EXPECT_EQ(r.out, name2 + "\n");
}

TEST(LauncherRun, LoopbackNetworkHasOnlyLoUp) {
  TempDir root;
  std::string name = unique_name("net");
  ContainerGuard guard(root.path(), name);
  auto r = stasis_at(root, {"run", "--name", name, "--", "/bin/sh", "-c",
                            "ls /sys/class/net >/dev/null; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; "
                            "ip -o link | grep -c UP"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "lo\n1\n");
}

TEST(LauncherRun, HostNetworkSharesHostNamespace) {
  TempDir root;
  std::string name = unique_name("hnet");
  ContainerGuard guard(root.path(), name);
  auto r = stasis_at(root, {"run", "--name", name, "--net", "host", "--", "/bin/readlink", "/proc/self/ns/net"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, fs::read_symlink("/proc/self/ns/net").string() + "\n");
}

TEST(LauncherRun, VethTcpRoundTripAndCleanup) {
  TempDir root;
  std::string name = unique_name("veth");
  ContainerGuard guard(root.path(), name);
  std::string subnet = "10.213." + std::to_string(::getpid() % 200 + 20);
  auto r = stasis_at(root, {"run", "-d", "--name", name, "--net", "veth", "--ip", subnet + ".2/24", "--",
                            workload("launcher_tcp"), "server", subnet + ".2", "7777"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ps = stasis_at(root, {"ps", "-a", "--json"});
  auto at = ps.out.find("\"host_ifname\": \"");
  ASSERT_NE(at, std::string::npos) << ps.out;
  std::string ifname = ps.out.substr(at + 16, ps.out.find('"', at + 16) - at - 16);
  EXPECT_EQ(run_command({"ip", "-o", "link", "show", ifname}).exit_code, 0);
  EXPECT_NE(run_command({"ip", "-o", "addr", "show", ifname}).out.find(subnet + ".1/24"), std::string::npos);

  auto client = run_command({workload("launcher_tcp"), "client", subnet + ".2", "7777", "hello"}, seconds(20));
  EXPECT_EQ(client.exit_code, 0) << client.err;
  EXPECT_EQ(client.out, "echo:hello\n");

  EXPECT_TRUE(wait_until([&] { return stasis_at(root, {"ps", "-a"}).out.find("exited (0)") != std::string::npos; },
                         seconds(10)));
  r = stasis_at(root, {"rm", name});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(run_command({"ip", "-o", "link", "show", ifname}).exit_code, 0) << "veth left behind";
  EXPECT_TRUE(leftover_cgroups(name).empty());
  EXPECT_FALSE(fs::exists(root.path() / (name + ".state")));
}

// A second veth container in a subnet the host already has on a link is refused: the host
// would route the subnet to one of the two links only.
TEST(LauncherRun, VethInASubnetAlreadyOnTheHostIsRefused) {
  TempDir root;
  std::string first = unique_name("vsub"), second = unique_name("vsub");
  ContainerGuard g1(root.path(), first), g2(root.path(), second);
  std::string subnet = "10.217." + std::to_string(::getpid() % 200 + 20);
  auto run = [&](const std::string& name, const std::string& ip) {
    return stasis_at(root, {"run", "-d", "--name", name, "--net", "veth", "--ip", ip, "--", "/bin/sleep", "60"});
  };
  ASSERT_EQ(run(first, subnet + ".2/24").exit_code, 0);
  auto r = run(second, subnet + ".3/24");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("another subnet"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(root.path() / (second + ".state")));
  EXPECT_TRUE(leftover_cgroups(second).empty());
}

TEST(LauncherRun, CannotExecuteGives127) {
  TempDir root;
  std::string name = unique_name("127");
  ContainerGuard guard(root.path(), name);
  auto r = stasis_at(root, {"run", "--name", name, "--", "/no/such/program"});
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_NE(r.err.find("cannot execute '/no/such/program'"), std::string::npos) << r.err;
}

// Detached, the exec failure is told before `run -d` returns: 127 (not found) or 126 (not
// executable), with the message on run's stderr, and no container, cgroup or log left.
TEST(LauncherRun, DetachedCannotExecuteFailsBeforeDetaching) {
  TempDir root, files;
  const fs::path not_executable = files.path() / "data";
  { std::ofstream(not_executable) << "not a program\n"; }
  struct Case {
    std::vector<std::string> options;
    std::string program;
    int code;
  };
  for (const Case& c : {Case{{}, "/no/such/program", 127}, Case{{}, not_executable.string(), 126},
                        Case{{"--init"}, "/no/such/program", 127}, Case{{"--init"}, not_executable.string(), 126},
                        Case{{"--log", (files.path() / "user.log").string()}, "no-such-command-anywhere", 127}}) {
    std::string name = unique_name("d127");
    ContainerGuard guard(root.path(), name);
    std::vector<std::string> args{"run", "-d", "--name", name};
    args.insert(args.end(), c.options.begin(), c.options.end());
    args.insert(args.end(), {"--", c.program});
    auto r = stasis_at(root, args);
    EXPECT_EQ(r.exit_code, c.code) << c.program << ": " << r.out << r.err;
    EXPECT_NE(r.err.find("cannot execute '" + c.program + "'"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "") << "no name is printed for a container that did not start";
    EXPECT_FALSE(fs::exists(root.path() / (name + ".state"))) << c.program;
    EXPECT_FALSE(fs::exists(root.path() / (name + ".log"))) << c.program;
    EXPECT_TRUE(leftover_cgroups(name).empty()) << c.program;
  }
  EXPECT_EQ(stasis_at(root, {"ps", "-a"}).out.find("d127"), std::string::npos);
  // The foreground says 126 too for a file that is not executable.
  auto r = stasis_at(root, {"run", "--rm", "--", not_executable.string()});
  EXPECT_EQ(r.exit_code, 126) << r.err;
}

TEST(LauncherRun, EmptyNameIsAUsageError) {
  TempDir root;
  auto r = stasis_at(root, {"run", "-d", "--name", "", "--", "/bin/true"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("--name"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(stasis_at(root, {"ps", "-a"}).out.find("c-"), std::string::npos) << "a container was made";
}

TEST(LauncherRun, ExitStatusAndSignalArePassedOn) {
  TempDir root;
  std::string name = unique_name("st");
  ContainerGuard guard(root.path(), name);
  EXPECT_EQ(stasis_at(root, {"run", "--name", name, "--", "/bin/sh", "-c", "exit 42"}).exit_code, 42);
  EXPECT_NE(stasis_at(root, {"ps", "-a"}).out.find("exited (42)"), std::string::npos);
  std::string name2 = unique_name("st");
  ContainerGuard guard2(root.path(), name2);
  // A job that kills itself: 128 + 9.
  EXPECT_EQ(stasis_at(root, {"run", "--name", name2, "--init", "--", "/bin/sh", "-c", "kill -9 $$"}).exit_code, 137);
}

TEST(LauncherRun, InitReapsOrphansAndIsPid1) {
  TempDir root;
  std::string name = unique_name("init");
  ContainerGuard guard(root.path(), name);
  // The inner sh exits at once, leaving its background sleeps as orphans of PID 1.
  auto r = stasis_at(root, {"run", "--name", name, "--init", "--", "/bin/sh", "-c",
                            "cat /proc/1/comm; echo main=$$; /bin/sh -c 'sleep 0.1 & sleep 0.1 & exit 0'; sleep 1; "
                            "cat /proc/[0-9]*/stat 2>/dev/null | awk '{print $3}' | grep -c Z"});
  EXPECT_EQ(r.out, "stasis-init\nmain=2\n0\n") << r.err;
}

TEST(LauncherRun, RmOptionRemovesEverything) {
  TempDir root;
  std::string name = unique_name("rm");
  ContainerGuard guard(root.path(), name);
  auto r = stasis_at(root, {"run", "--rm", "--name", name, "--memory", "64M", "--", "/bin/true"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(leftover_cgroups(name).empty());
  EXPECT_FALSE(fs::exists(root.path() / (name + ".state")));
  EXPECT_EQ(stasis_at(root, {"ps", "-a"}).out.find(name), std::string::npos);
}

TEST(LauncherRun, DetachPsKillRm) {
  TempDir root;
  std::string name = unique_name("d");
  ContainerGuard guard(root.path(), name);
  auto r = stasis_at(root, {"run", "-d", "--name", name, "--pids", "50", "--", "/bin/sh", "-c",
                            "echo started; exec sleep 100"},
                     seconds(20));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, name + "\n");
  auto ps = stasis_at(root, {"ps", "-a"});
  EXPECT_NE(ps.out.find(name), std::string::npos);
  EXPECT_NE(ps.out.find("running"), std::string::npos) << ps.out;
  EXPECT_NE(ps.out.find("pids=50"), std::string::npos) << ps.out;
  EXPECT_TRUE(wait_until([&] { return slurp(root.path() / (name + ".log")) == "started\n"; }, seconds(5)));

  r = stasis_at(root, {"rm", name});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("is running"), std::string::npos) << r.err;

  // sleep as PID 1 has no handler for TERM, so the kernel drops it: KILL by name.
  r = stasis_at(root, {"kill", name, "-s", "SIGKILL"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(wait_until([&] { return stasis_at(root, {"ps", "-a"}).out.find("killed (SIGKILL)") != std::string::npos; },
                         seconds(10)));
  r = stasis_at(root, {"rm", name});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(leftover_cgroups(name).empty());
  EXPECT_FALSE(fs::exists(root.path() / (name + ".state")));
  EXPECT_FALSE(fs::exists(root.path() / (name + ".log")));
}

TEST(LauncherRun, KillWithNumberAndTermThroughInit) {
  TempDir root;
  std::string name = unique_name("k");
  ContainerGuard guard(root.path(), name);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--init", "--name", name, "--", "/bin/sleep", "100"}).exit_code, 0);
  // With --init, TERM reaches sleep (PID 2), which dies of it.
  EXPECT_EQ(stasis_at(root, {"kill", name, "-s", "15"}).exit_code, 0);
  EXPECT_TRUE(wait_until([&] { return stasis_at(root, {"ps", "-a"}).out.find("exited (143)") != std::string::npos; },
                         seconds(10)))
      << stasis_at(root, {"ps", "-a"}).out;
}

TEST(LauncherRun, ExecJoinsNamespacesAndCgroup) {
  TempDir root;
  std::string name = unique_name("exec");
  ContainerGuard guard(root.path(), name);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "--", "/bin/sleep", "100"}).exit_code, 0);
  auto ps = stasis_at(root, {"ps", "-a", "--json"});
  auto at = ps.out.find("\"init_pid\": ");
  ASSERT_NE(at, std::string::npos);
  int init = std::stoi(ps.out.substr(at + 12));
  std::string script;
  std::string expected;
  for (const char* ns : {"pid", "mnt", "net", "uts", "ipc", "cgroup"}) {
    script += std::string("readlink /proc/self/ns/") + ns + "; ";
    expected += fs::read_symlink(fs::path("/proc") / std::to_string(init) / "ns" / ns).string() + "\n";
  }
  script += "hostname; cat /proc/self/cgroup | grep freezer";
  auto r = stasis_at(root, {"exec", name, "--", "/bin/sh", "-c", script});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, expected + name + "\n6:freezer:/\n");
  EXPECT_EQ(stasis_at(root, {"exec", name, "--", "/bin/sh", "-c", "exit 7"}).exit_code, 7);
  EXPECT_EQ(stasis_at(root, {"exec", name, "--", "/no/such"}).exit_code, 127);
}

TEST(LauncherRun, RmForceLeavesNothingBehind) {
  TempDir root;
  std::string name = unique_name("rmf");
  ContainerGuard guard(root.path(), name);
  std::string subnet = "10.213." + std::to_string(::getpid() % 200 + 21);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "--net", "veth", "--ip", subnet + ".9/24", "--memory", "64M",
                             "--", "/bin/sh", "-c", "sleep 100 & sleep 100"})
                .exit_code,
            0);
  EXPECT_FALSE(leftover_cgroups(name).empty());
  auto ps = stasis_at(root, {"ps", "-a", "--json"});
  auto at = ps.out.find("\"host_ifname\": \"");
  ASSERT_NE(at, std::string::npos) << ps.out;
  std::string ifname = ps.out.substr(at + 16, ps.out.find('"', at + 16) - at - 16);
  EXPECT_EQ(run_command({"ip", "-o", "link", "show", ifname}).exit_code, 0);
  auto r = stasis_at(root, {"rm", "-f", name});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(leftover_cgroups(name).empty());
  EXPECT_NE(run_command({"ip", "-o", "link", "show", ifname}).exit_code, 0) << "veth left behind";
  EXPECT_FALSE(fs::exists(root.path() / (name + ".state")));
}

// rm -f of a --rm container: its monitor removes the cgroup as the job dies, which is no error.
TEST(LauncherRun, RmForceOfARmContainerSucceeds) {
  TempDir root;
  for (int i = 0; i < 3; ++i) {
    std::string name = unique_name("rmrm");
    ContainerGuard guard(root.path(), name);
    ASSERT_EQ(stasis_at(root, {"run", "-d", "--rm", "--name", name, "--", "/bin/sleep", "60"}).exit_code, 0);
    auto r = stasis_at(root, {"rm", "-f", name});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(fs::exists(root.path() / (name + ".state")));
    EXPECT_TRUE(wait_until([&] { return leftover_cgroups(name).empty(); }, seconds(5)));
  }
}

TEST(LauncherRun, GeneratedNamesAreUnique) {
  TempDir root;
  auto a = stasis_at(root, {"run", "-d", "--", "/bin/true"});
  auto b = stasis_at(root, {"run", "-d", "--", "/bin/true"});
  ASSERT_EQ(a.exit_code, 0);
  ASSERT_EQ(b.exit_code, 0);
  std::string na = a.out.substr(0, a.out.size() - 1), nb = b.out.substr(0, b.out.size() - 1);
  ContainerGuard ga(root.path(), na), gb(root.path(), nb);
  EXPECT_NE(na, nb);
  EXPECT_TRUE(wait_until([&] { return stasis_at(root, {"rm", na}).exit_code == 0; }, seconds(10)));
  EXPECT_TRUE(wait_until([&] { return stasis_at(root, {"rm", nb}).exit_code == 0; }, seconds(10)));
}

}  // namespace
}  // namespace stasis::test

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

TEST(LauncherRun, MountsInsideStayInside) {
  TempDir root;
  TempDir target("stasis-mnt");
  std::string name = unique_name("mnt");
  ContainerGuard guard(root.path(), name);
  auto r = stasis_at(root, {"run", "--rm", "--name", name, "--", "/bin/sh", "-c",
                            "mount -t tmpfs stasis-test-tmpfs " + target.path().string() +
                                " && grep -c stasis-test-tmpfs /proc/self/mountinfo"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n");
  EXPECT_EQ(slurp("/proc/self/mountinfo").find("stasis-test-tmpfs"), std::string::npos);
  // And the host's /proc is untouched by the container's private one.
  EXPECT_TRUE(fs::exists(fs::path("/proc") / std::to_string(getpid())));
}

TEST(LauncherRun, RootfsPivotRootAndExecChroot) {
  TempDir root;
  TempDir rootfs("stasis-rootfs");
  make_rootfs(rootfs.path());
  std::string name = unique_name("rootfs");
  ContainerGuard guard(root.path(), name);
  auto r = stasis_at(root, {"run", "--name", name, "--rootfs", rootfs.path().string(), "--", "/bin/sh", "-c",
                            "echo pid=$$; pwd; [ -e /etc/passwd ] || echo no-host-etc; [ -d /proc/1 ] && echo proc; "
                            "[ -c /dev/null ] && echo x > /dev/null && echo dev-null; [ -e /bin/ls ] || echo no-ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "pid=1\n/\nno-host-etc\nproc\ndev-null\nno-ls\n");
  // The host still sees an empty proc directory in the tree: the container's mounts stayed inside.
  EXPECT_TRUE(fs::is_empty(rootfs.path() / "proc"));

  std::string name2 = unique_name("rootfs");
  ContainerGuard guard2(root.path(), name2);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name2, "--rootfs", rootfs.path().string(), "--", "/bin/sh", "-c",
                             "while :; do read x < /dev/null; done"})
                .exit_code,
            0);
  r = stasis_at(root, {"exec", name2, "--", "/bin/sh", "-c", "[ -e /etc/passwd ] || echo chrooted; echo $$"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, 9), "chrooted\n") << r.out;
  EXPECT_EQ(stasis_at(root, {"rm", "-f", name2}).exit_code, 0);
}

}  // namespace
}  // namespace stasis::test

namespace stasis::test {
namespace {

TEST(LauncherRun, ForegroundRunForwardsSignals) {
  TempDir root;
  std::string name = unique_name("fwd");
  ContainerGuard guard(root.path(), name);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 1);
    execl(stasis_binary().c_str(), "stasis", "--root", root.path().c_str(), "run", "--init", "--name", name.c_str(),
          "--", "/bin/sleep", "100", nullptr);
    _exit(127);
  }
  bool running = wait_until([&] { return stasis_at(root, {"ps", "-a"}).out.find("running") != std::string::npos; },
                            std::chrono::seconds(10));
  EXPECT_TRUE(running);
  // The job runs a moment before `stasis run` catches what it forwards: wait for its handler.
  auto catches_sigterm = [&] {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);)
      if (line.rfind("SigCgt:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> (SIGTERM - 1)) & 1;
    return 0ull;
  };
  EXPECT_TRUE(wait_until([&] { return catches_sigterm() != 0; }, std::chrono::seconds(10)));
  kill(pid, SIGTERM);
  int status = 0;
  bool done = wait_until([&] { return waitpid(pid, &status, WNOHANG) == pid; }, std::chrono::seconds(10));
  if (!done) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  ASSERT_TRUE(done) << "stasis run did not end after SIGTERM";
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
}

}  // namespace
}  // namespace stasis::test
