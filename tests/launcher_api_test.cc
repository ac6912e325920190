// The launcher API used by dump and restore: state store, start_container with a custom init
// (run in a process forked from the caller, which may ptrace it), wait, status, cgroup access.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "common/error.h"
#include "launcher/config.h"
#include "launcher/container.h"
#include "launcher/state_store.h"
#include "tests/launcher_test_util.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

pb::ContainerConfig config_named(const std::string& name) {
  pb::ContainerConfig c;
  c.set_name(name);
  c.add_argv("(custom init)");
  return c;
}

TEST(LauncherApi, StateStoreRoundTrip) {
  TempDir root;
  launcher::StateStore store(root.path() / "sub");
  EXPECT_TRUE(store.list().empty());
  pb::ContainerState s;
  s.mutable_config()->set_name("one");
  s.set_status("running");
  s.set_init_pid(1234);
  (*s.mutable_cgroup_paths())["freezer"] = "/sys/fs/cgroup/freezer/stasis/one";
  (*s.mutable_namespace_inodes())["pid"] = 4026531836ULL;
  store.save(s);
  pb::ContainerState back = store.load("one");
  EXPECT_EQ(back.SerializeAsString(), s.SerializeAsString());
  EXPECT_NE(launcher::state_to_json(s).find("\"init_pid\": 1234"), std::string::npos);
  s.mutable_config()->set_name("two");
  store.save(s);
  ASSERT_EQ(store.list().size(), 2u);
  EXPECT_EQ(store.list()[0].config().name(), "one");
  EXPECT_TRUE(store.update("two", [](pb::ContainerState& st) { st.set_status("exited"); }));
  EXPECT_EQ(store.load("two").status(), "exited");
  store.remove("two");
  EXPECT_FALSE(store.update("two", [](pb::ContainerState&) {}));
  try {
    store.load("two");
    FAIL() << "load of a removed container succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "no container named two under " + (root.path() / "sub").string());
  }
}

TEST(LauncherApi, CustomInitRunsAsPid1AfterSetup) {
  TempDir root;
  std::string name = unique_name("api");
  ContainerGuard guard(root.path(), name);
  pb::ContainerConfig config = config_named(name);
  config.set_hostname("apihost");
  config.add_env("API_VAR=42");
  config.set_log_path((root.path() / "init.log").string());
  int parent_marker = 77;  // memory of the caller is there in the init
  auto started = launcher::start_container(root.path(), config, [&]() -> int {
    char host[64] = {};
    gethostname(host, sizeof host);
    std::printf("pid=%d host=%s var=%s marker=%d\n", getpid(), host, getenv("API_VAR"), parent_marker);
    return 5;
  });
  EXPECT_GT(started.init_pid, 0);
  EXPECT_EQ(launcher::wait_for_exit(root.path(), started), 5);
  EXPECT_EQ(slurp(root.path() / "init.log"), "pid=1 host=apihost var=42 marker=77\n");
  pb::ContainerState state = launcher::StateStore(root.path()).load(name);
  EXPECT_EQ(state.status(), "exited");
  EXPECT_EQ(state.exit_code(), 5);
  EXPECT_EQ(state.init_pid(), started.init_pid);
  EXPECT_EQ(launcher::display_status(state), "exited (5)");
  EXPECT_EQ(state.namespace_inodes().size(), 6u);
  launcher::remove_container(root.path(), name, false);
  EXPECT_TRUE(leftover_cgroups(name).empty());
}

TEST(LauncherApi, CallerCanPtraceSeizeInitAndUseTheCgroup) {
  TempDir root;
  std::string name = unique_name("trace");
  ContainerGuard guard(root.path(), name);
  auto started = launcher::start_container(root.path(), config_named(name), []() -> int {
    for (;;) pause();
  });
  pb::ContainerState state = launcher::StateStore(root.path()).load(name);
  EXPECT_EQ(state.status(), "running");
  EXPECT_EQ(state.init_pid(), started.init_pid);

  // What the restorer does with its stub.
  pid_t pid = started.init_pid;
  ASSERT_EQ(ptrace(PTRACE_SEIZE, pid, nullptr, nullptr), 0) << strerror(errno);
  ASSERT_EQ(ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, __WALL), pid);
  EXPECT_TRUE(WIFSTOPPED(status));
  ASSERT_EQ(ptrace(PTRACE_DETACH, pid, nullptr, nullptr), 0);

  Cgroup cgroup = launcher::open_cgroup(state);
  EXPECT_EQ(cgroup.processes(), std::vector<pid_t>{pid});
  {
    CgroupFreeze freeze(cgroup);
    EXPECT_TRUE(cgroup.frozen());
  }
  EXPECT_FALSE(cgroup.frozen());

  launcher::kill_container(root.path(), name, SIGKILL);
  EXPECT_EQ(launcher::wait_for_exit(root.path(), started), 137);
  launcher::set_container_status(root.path(), name, "exited");
  state = launcher::StateStore(root.path()).load(name);
  EXPECT_EQ(launcher::display_status(state), "killed (SIGKILL)");
  launcher::remove_container(root.path(), name, false);
  EXPECT_FALSE(fs::exists(root.path() / (name + ".state")));
}

TEST(LauncherApi, MonitorDoesNotKeepTheCallersFds) {
  TempDir root;
  std::string name = unique_name("fds");
  ContainerGuard guard(root.path(), name);
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  // PID 1 gets the caller's fds (it closes the write end itself); the monitor must not hold it.
  auto started = launcher::start_container(root.path(), config_named(name), [&]() -> int {
    close(p[1]);
    for (;;) pause();
  });
  close(p[1]);
  pollfd pfd{p[0], POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 5000), 1) << "the write end is still open somewhere";
  char c;
  EXPECT_EQ(read(p[0], &c, 1), 0);
  close(p[0]);
  launcher::kill_container(root.path(), name, SIGKILL);
  EXPECT_EQ(launcher::wait_for_exit(root.path(), started), 137);
}

TEST(LauncherApi, FailedSetupLeavesNothingAndReportsWhy) {
  TempDir root;
  std::string name = unique_name("fail");
  pb::ContainerConfig config = config_named(name);
  config.set_workdir("/no/such/dir");
  config.set_memory_max(64 << 20);
  bool ran = false;
  try {
    launcher::start_container(root.path(), config, [&] {
      ran = true;
      return 0;
    });
    FAIL() << "start_container succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--workdir /no/such/dir"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(leftover_cgroups(name).empty());
  EXPECT_FALSE(fs::exists(root.path() / (name + ".state")));
}

TEST(LauncherApi, ParseSignal) {
  EXPECT_EQ(launcher::parse_signal("KILL"), SIGKILL);
  EXPECT_EQ(launcher::parse_signal("sigterm"), SIGTERM);
  EXPECT_EQ(launcher::parse_signal("10"), 10);
  EXPECT_THROW(launcher::parse_signal("NOPE"), UsageError);
  EXPECT_EQ(launcher::signal_name(SIGKILL), "SIGKILL");
}

// `--cpus` takes 0.01 and up; a restored cgroup's own quota (it comes with its period) may be
// less, as the kernel allows (1 ms per period), and must not fail the restore.
TEST(LauncherApi, RestoredCpuQuotaBelowTheFlagsFloorIsAccepted) {
  pb::ContainerConfig flags;
  flags.add_argv("/bin/true");
  flags.set_cpus(0.005);
  EXPECT_THROW(launcher::validate_config(flags), UsageError);
  pb::ContainerConfig restored = flags;
  restored.set_cpu_period_us(1000000);
  EXPECT_NO_THROW(launcher::validate_config(restored));
}

}  // namespace
}  // namespace stasis::test
