// A killed stasis must not hurt the job (docs/dump.md, "If the dumper dies"): `stasis dump`
// killed with SIGKILL at many moments of its work leaves the job running, thawed, untraced,
// with its registers, signal masks and memory as they were (the dumpkill workload checks
// them), and the job can still be dumped and restored after. Also: two dumps into one
// directory, and a restore killed half way.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"
#include "tests/support/test_util.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kJobMib = "256";

// `stasis --root ROOT args...` started in the background, output to a log; killed and reaped
// in every path.
class Stasis {
 public:
  Stasis(const CheckpointEnv& env, const std::vector<std::string>& args, const fs::path& log) {
    std::vector<std::string> argv{stasis_binary(), "--root", env.root().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      int null_fd = ::open("/dev/null", O_RDONLY);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      if (null_fd >= 0) ::dup2(null_fd, 0);
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      ::execv(cargv[0], cargv.data());
      ::_exit(127);
    }
  }
  ~Stasis() { kill(); }
  pid_t pid() const { return pid_; }
  // SIGKILL (if still running) and reap; returns the wait status.
  int kill() {
    if (pid_ <= 0) return status_;
    ::kill(pid_, SIGKILL);
    return wait();
  }
  int wait() {
    if (pid_ <= 0) return status_;
    while (::waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status_;
  }
  // True once it exited by itself (reaped).
  bool exited() {
    if (pid_ <= 0) return true;
    if (::waitpid(pid_, &status_, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    return false;
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
};

// A line "Key:\tvalue" of /proc/PID/task/TID/status.
std::string status_field(pid_t pid, pid_t tid, const std::string& key) {
  std::istringstream in(read_text(fmt::format("/proc/{}/task/{}/status", pid, tid)));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) {
      std::string v = line.substr(key.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return "";
}

std::vector<pid_t> tasks_of(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (fs::directory_iterator it(fmt::format("/proc/{}/task", pid), ec), end; !ec && it != end; it.increment(ec))
    out.push_back(std::stoi(it->path().filename().string()));
  return out;
}

// The job after a killed dump: thawed (when freezer_state is given), every thread untraced and
// not stopped, and its own checks still passing while its progress goes on.
::testing::AssertionResult job_intact(pid_t job, const fs::path& status, const std::string& freezer_state,
                                      std::uint64_t* progress) {
  if (!freezer_state.empty()) {
    // The guardian thaws as soon as it sees the dumper gone.
    bool thawed = wait_until([&] { return read_text(freezer_state).rfind("THAWED", 0) == 0; }, 2000ms);
    if (!thawed) return ::testing::AssertionFailure() << "the cgroup stayed " << read_text(freezer_state);
  }
  if (!process_alive(job)) return ::testing::AssertionFailure() << "the job (pid " << job << ") died";
  auto threads = tasks_of(job);
  if (threads.size() != 5)
    return ::testing::AssertionFailure() << "the job has " << threads.size() << " threads, expected 5";
  for (pid_t tid : threads) {
    std::string tracer = status_field(job, tid, "TracerPid");
    if (tracer != "0") return ::testing::AssertionFailure() << "thread " << tid << " is still traced by " << tracer;
    std::string state = status_field(job, tid, "State");
    if (!state.empty() && (state[0] == 't' || state[0] == 'T'))
      return ::testing::AssertionFailure() << "thread " << tid << " is left stopped (" << state << ")";
  }
  // A few rounds of its checks (masks every round, registers every millisecond or so).
  return wait_for_progress(status, *progress + 3, 5s, progress);
}

// When to kill: a third in the first 12 ms after the start (seize, collect, injection), the
// rest spread over the whole dump and a little beyond.
std::vector<std::chrono::microseconds> kill_points(int kills, std::chrono::microseconds dump_length) {
  std::vector<std::chrono::microseconds> out;
  const int early = kills / 3;
  for (int i = 0; i < early; ++i) out.emplace_back(i * 12000 / early);
  const auto span = dump_length * 13 / 10;
  for (int i = 0; i < kills - early; ++i) out.emplace_back(12000 + (span.count() - 12000) * i / (kills - early - 1));
  return out;
}

struct KillFigures {
  int killed_during = 0;   // dumps that were still running when killed
  int finished_first = 0;  // dumps that completed before the kill
};

// Kills `stasis dump <target> -D ... --leave-running` at each point and checks the job after.
void kill_dumps(const CheckpointEnv& env, const std::vector<std::string>& target, pid_t job,
                const fs::path& status, const std::string& freezer_state, int kills, KillFigures* figures) {
  std::uint64_t progress = 0;
  ASSERT_TRUE(wait_for_progress(status, 0, 20s, &progress));
  // One full dump first, for its length.
  auto dump_args = [&](const fs::path& dir) {
    std::vector<std::string> a{"dump"};
    a.insert(a.end(), target.begin(), target.end());
    a.insert(a.end(), {"-D", dir.string(), "--leave-running"});
    return a;
  };
  const fs::path log = env.work() / "dump.log";
  auto t0 = Clock::now();
  {
    Stasis full(env, dump_args(env.work() / "full"), log);
    int st = full.wait();
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "a whole dump failed: " << read_text(log);
  }
  const auto length = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
  fs::remove_all(env.work() / "full");
  std::cout << "[ figures  ] a whole dump (start to exit): " << length.count() / 1000.0 << " ms\n";

  int i = 0;
  for (auto at : kill_points(kills, length)) {
    const fs::path dir = env.work() / fmt::format("killed-{}", i++);
    Stasis dumper(env, dump_args(dir), log);
    const auto start = Clock::now();
    std::this_thread::sleep_until(start + at);
    if (dumper.exited()) ++figures->finished_first;
    else ++figures->killed_during;
    dumper.kill();
    ASSERT_TRUE(job_intact(job, status, freezer_state, &progress))
        << "after a kill " << at.count() / 1000.0 << " ms into the dump (" << i << " of " << kills << ")";
    fs::remove_all(dir);
  }
  std::cout << "[ figures  ] " << kills << " kills: " << figures->killed_during << " during the dump, "
            << figures->finished_first << " after it had finished\n";
}

TEST(DumpKill, KilledDumperLeavesTheContainerJobAsItWas) {
  CheckpointEnv env;
  Container c(env, "dumpkill");
  ASSERT_TRUE(c.run(c_workload("dumpkill", {kJobMib})));
  auto job_init = c.host_pid();
  ASSERT_TRUE(job_init.has_value());
  // The job itself: the container's PID 1, or its child under --init.
  pid_t job = *job_init;
  {
    std::istringstream children(read_text(fmt::format("/proc/{}/task/{}/children", job, job)));
    pid_t child = 0;
    if (children >> child) job = child;
  }
  std::string freezer;
  if (auto path = c.cgroup_path("freezer")) freezer = *path + "/freezer.state";
  ASSERT_FALSE(freezer.empty()) << "no freezer cgroup for the container";

  KillFigures figures;
  ASSERT_NO_FATAL_FAILURE(kill_dumps(env, {c.name()}, job, c.status(), freezer, 48, &figures));
  EXPECT_GT(figures.killed_during, 20) << "too few kills landed during a dump to say anything";

  // And it still dumps and restores.
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(c.status(), 0, 5s, &n));
  const fs::path images = env.image_dir("after-kills");
  ASSERT_TRUE(c.dump(images)) << c.last_output();
  Container restored(env, "dumpkill-back");
  ASSERT_TRUE(restored.restore(images, c.status()));
  ASSERT_TRUE(wait_for_progress(restored.status(), n, 30s, &n, n));
  ASSERT_TRUE(keep_progressing(restored.status(), 1500ms));
}

// The same, deterministic: the dumper SIGKILLs itself (STASIS_FAULT) at one exact step of the
// injection (each register, mask or stop change of a thread), for every step of the first
// calls and of the last ones and a sample in between, and once while the cgroup is frozen.
TEST(DumpKill, KilledAtEachStepOfTheInjection) {
  CheckpointEnv env;
  Container c(env, "dumpkill-steps");
  ASSERT_TRUE(c.run(c_workload("dumpkill", {"64"})));
  pid_t job = *c.host_pid();
  {
    std::istringstream children(read_text(fmt::format("/proc/{}/task/{}/children", job, job)));
    pid_t child = 0;
    if (children >> child) job = child;
  }
  const std::string freezer = c.cgroup_path("freezer").value_or("") + "/freezer.state";
  std::uint64_t progress = 0;
  ASSERT_TRUE(wait_for_progress(c.status(), 0, 20s, &progress));

  // How many steps a whole dump takes.
  CommandResult whole = env.stasis({"-v", "dump", c.name(), "-D", (env.work() / "whole").string(), "--leave-running"});
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  fs::remove_all(env.work() / "whole");
  const std::string marker = "injection done in ";
  auto at = whole.err.find(marker);
  ASSERT_NE(at, std::string::npos) << "no step count in: " << whole.err;
  const int total = std::stoi(whole.err.substr(at + marker.size()));
  std::vector<std::string> faults{"dump-kill-while-frozen"};
  for (int n = 1; n <= total; ++n)
    if (n <= 40 || n > total - 40 || n % 9 == 0) faults.push_back(fmt::format("dump-kill-at-step-{}", n));
  std::cout << "[ figures  ] " << total << " injection steps in a dump; killing at " << faults.size() << "\n";

  const fs::path log = env.work() / "dump.log";
  int killed = 0;
  for (const auto& fault : faults) {
    ASSERT_EQ(::setenv("STASIS_FAULT", fault.c_str(), 1), 0);
    const fs::path dir = env.work() / fault;
    int st = 0;
    {
      Stasis dumper(env, {"dump", c.name(), "-D", dir.string(), "--leave-running"}, log);
      st = dumper.wait();
    }
    ::unsetenv("STASIS_FAULT");
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) ++killed;
    else ADD_FAILURE() << fault << ": the dump did not die there: " << read_text(log);
    ASSERT_TRUE(job_intact(job, c.status(), freezer, &progress)) << "after " << fault;
    fs::remove_all(dir);
  }
  EXPECT_EQ(killed, static_cast<int>(faults.size()));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(c.status(), 0, 5s, &n));
  const fs::path images = env.image_dir("after-steps");
  ASSERT_TRUE(c.dump(images)) << c.last_output();
  Container restored(env, "dumpkill-steps-back");
  ASSERT_TRUE(restored.restore(images, c.status()));
  ASSERT_TRUE(wait_for_progress(restored.status(), n, 30s, &n, n));
  ASSERT_TRUE(keep_progressing(restored.status(), 1000ms));
}

TEST(DumpKill, KilledDumperLeavesAHostProcessAsItWas) {
  CheckpointEnv env;
  HostProcess host;
  ASSERT_TRUE(host.start(c_workload("dumpkill", {kJobMib}), env.status_path("host")));
  KillFigures figures;
  ASSERT_NO_FATAL_FAILURE(
      kill_dumps(env, {"--pid", std::to_string(host.pid())}, host.pid(), host.status(), "", 30, &figures))
      << host.log_tail();
  EXPECT_GT(figures.killed_during, 10);

  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(host.status(), 0, 5s, &n));
  const fs::path images = env.image_dir("after-kills");
  ASSERT_TRUE(env.dump_pid(host.pid(), images)) << host.log_tail();
  Container restored(env, "dumpkill-host-back");
  ASSERT_TRUE(restored.restore(images, host.status()));
  ASSERT_TRUE(wait_for_progress(restored.status(), n, 30s, &n, n));
  ASSERT_TRUE(keep_progressing(restored.status(), 1500ms));
}

// A paused container whose dump is killed is left paused: the guardian freezes it again
// (the dump thaws it to seize its threads), and once thawed by its owner it goes on intact.
TEST(DumpKill, KilledDumpOfAPausedContainerLeavesItPaused) {
  CheckpointEnv env;
  Container c(env, "dumpkill-paused");
  ASSERT_TRUE(c.run(c_workload("dumpkill", {"16"})));
  pid_t job = *c.host_pid();
  {
    std::istringstream children(read_text(fmt::format("/proc/{}/task/{}/children", job, job)));
    pid_t child = 0;
    if (children >> child) job = child;
  }
  const std::string freezer = c.cgroup_path("freezer").value_or("") + "/freezer.state";
  std::uint64_t progress = 0;
  ASSERT_TRUE(wait_for_progress(c.status(), 0, 20s, &progress));
  ASSERT_EQ(env.stasis({"freeze", c.name()}).exit_code, 0);
  const fs::path log = env.work() / "dump.log";
  for (const char* fault : {"dump-kill-while-frozen", "dump-kill-at-step-3", "dump-kill-at-step-200"}) {
    ASSERT_EQ(::setenv("STASIS_FAULT", fault, 1), 0);
    int st = 0;
    {
      Stasis dumper(env, {"dump", c.name(), "-D", (env.work() / fault).string(), "--leave-running"}, log);
      st = dumper.wait();
    }
    ::unsetenv("STASIS_FAULT");
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << fault << ": " << read_text(log);
    EXPECT_TRUE(wait_until([&] { return read_text(freezer).rfind("FROZEN", 0) == 0; }, 2000ms))
        << fault << ": the paused container is " << read_text(freezer);
    for (pid_t tid : tasks_of(job)) EXPECT_EQ(status_field(job, tid, "TracerPid"), "0") << fault << ", tid " << tid;
    fs::remove_all(env.work() / fault);
  }
  ASSERT_EQ(env.stasis({"thaw", c.name()}).exit_code, 0);
  ASSERT_TRUE(job_intact(job, c.status(), freezer, &progress));
  ASSERT_TRUE(keep_progressing(c.status(), 1000ms));
}

// The two fallbacks of the injection still make good checkpoints: recovery blocks in the
// scratch area's slots (no room below a thread's stack pointer), and calls at each thread's
// own code (no room in the vDSO, with a warning that a killed dump is not safe then).
TEST(DumpKill, InjectionFallbacksStillRoundTrip) {
  for (const char* fault : {"dump-block-in-scratch", "dump-no-vdso-stub"}) {
    SCOPED_TRACE(fault);
    CheckpointEnv env;
    Container c(env, "fallback");
    ASSERT_TRUE(c.run(c_workload("dumpkill", {"16"})));
    std::uint64_t n = 0;
    ASSERT_TRUE(wait_for_progress(c.status(), 0, 5s, &n));
    const fs::path images = env.image_dir("fallback");
    ASSERT_EQ(::setenv("STASIS_FAULT", fault, 1), 0);
    CommandResult r = env.stasis({"dump", c.name(), "-D", images.string()});
    ::unsetenv("STASIS_FAULT");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    if (std::string(fault) == "dump-no-vdso-stub") {
      EXPECT_NE(r.err.find("no room for the injection stub"), std::string::npos) << r.err;
    }
    Container restored(env, "fallback-back");
    ASSERT_TRUE(restored.restore(images, c.status()));
    ASSERT_TRUE(wait_for_progress(restored.status(), n, 30s, &n, n));
    ASSERT_TRUE(keep_progressing(restored.status(), 1000ms));
  }
}

// Waits until a dump has claimed dir (its `.unfinished` mark is there).
bool claimed(const fs::path& dir) {
  return wait_until([&] { return fs::exists(dir / ".unfinished"); }, 10s);
}

TEST(DumpClaim, SecondDumpIntoTheSameDirectoryIsRefusedAndTheFirstSucceeds) {
  CheckpointEnv env;
  Container big(env, "claim-big");
  ASSERT_TRUE(big.run(c_workload("bigmem", {kJobMib})));
  Container small(env, "claim-small");
  ASSERT_TRUE(small.run(c_workload("counter")));
  const fs::path dir = env.work() / "shared";
  const fs::path log = env.work() / "first.log";
  Stasis first(env, {"dump", big.name(), "-D", dir.string(), "--leave-running"}, log);
  ASSERT_TRUE(claimed(dir));
  CommandResult second = env.stasis({"dump", small.name(), "-D", dir.string(), "--leave-running"});
  EXPECT_NE(second.exit_code, 0) << "the second dump into " << dir << " succeeded";
  EXPECT_NE(second.err.find("is being written by another dump (pid " + std::to_string(first.pid()) + ")"),
            std::string::npos)
      << second.err;
  int st = first.wait();
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "the first dump failed: " << read_text(log);
  EXPECT_FALSE(fs::exists(dir / ".unfinished"));
  // The first dump's checkpoint is whole: it restores.
  big.remove();
  Container restored(env, "claim-big-back");
  ASSERT_TRUE(restored.restore(dir, big.status()));
  ASSERT_TRUE(wait_for_progress(restored.status(), 0, 30s));
}

TEST(DumpClaim, LeftoversOfAKilledDumpDoNotBlockTheNext) {
  CheckpointEnv env;
  Container c(env, "claim-stale");
  ASSERT_TRUE(c.run(c_workload("bigmem", {kJobMib})));
  const fs::path dir = env.work() / "stale";
  {
    Stasis dumper(env, {"dump", c.name(), "-D", dir.string(), "--leave-running"}, env.work() / "killed.log");
    ASSERT_TRUE(claimed(dir));
    std::this_thread::sleep_for(20ms);  // into the memory phase: page files half written
    dumper.kill();
  }
  ASSERT_TRUE(fs::exists(dir / ".unfinished")) << "the killed dump finished anyway";
  ASSERT_TRUE(c.dump(dir, {"--leave-running"})) << c.last_output();
  EXPECT_FALSE(fs::exists(dir / ".unfinished"));
  // A complete checkpoint is never taken for leftovers.
  CommandResult again = env.stasis({"dump", c.name(), "-D", dir.string(), "--leave-running"});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("not empty"), std::string::npos) << again.err;
}

// A restore killed with SIGKILL at any moment leaves at most a container that `ps` shows as
// failed (or "created", when it was killed before the container started), never as a
// running job unless the restore had finished; and `rm -f` removes it, with no process of it
// left.
TEST(KillRestore, KilledRestoreLeavesAtMostAFailedContainerThatRmRemoves) {
  CheckpointEnv env;
  Container c(env, "restore-kill");
  ASSERT_TRUE(c.run(c_workload("bigmem", {"64"})));
  const fs::path images = env.image_dir("restore-kill");
  ASSERT_TRUE(c.dump(images)) << c.last_output();
  const fs::path log = env.work() / "restore.log";
  for (int ms : {0, 2, 5, 8, 10, 12, 15, 20, 25, 30, 40, 60, 80}) {
    const std::string name = env.unique_name("killed-restore");
    {
      Stasis restore(env, {"restore", "-D", images.string(), "--name", name, "-d"}, log);
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      restore.kill();
    }
    // What ps says once the half-built job (if any) has gone, and whether the restore had
    // finished (its state says restored) before the kill.
    std::string shown = "(not listed)";
    bool finished = false;
    wait_until(
        [&] {
          CommandResult ps = env.stasis({"ps", "-a"});
          std::istringstream lines(ps.out);
          std::string line;
          shown = "(not listed)";
          while (std::getline(lines, line))
            if (line.rfind(name + " ", 0) == 0) {
              shown = line.substr(name.size());
              shown.erase(0, shown.find_first_not_of(' '));
              for (const char* known : {"failed (restore did not finish)", "restoring", "running", "created"})
                if (shown.rfind(known, 0) == 0) shown = known;
            }
          CommandResult json = env.stasis({"ps", "-a", "--json"});
          auto at = json.out.find("\"name\": \"" + name + "\"");
          auto next = at == std::string::npos ? at : json.out.find("\"config\"", at);
          auto restored = at == std::string::npos ? at : json.out.find("\"restored\": true", at);
          finished = restored != std::string::npos && (next == std::string::npos || restored < next);
          // "created" settles too when the monitor was still starting the container.
          return shown != "restoring" && shown != "created";
        },
        1500ms);
    std::cout << "[ figures  ] restore killed " << ms << " ms in" << (finished ? " (after it finished)" : "")
              << ": ps shows " << shown << "\n";
    if (finished) {
      EXPECT_EQ(shown, "running") << "killed " << ms << " ms in";
    } else {
      // "exited (1)": killed in the instant between the container's start and its "restoring"
      // mark; the stub then leaves at once, as it does afterwards.
      EXPECT_TRUE(shown == "(not listed)" || shown == "created" || shown == "failed (restore did not finish)" ||
                  shown.rfind("exited (1)", 0) == 0)
          << "killed " << ms << " ms into the restore, ps shows " << shown;
    }
    CommandResult rm = env.stasis({"rm", "-f", name});
    CommandResult after = env.stasis({"ps", "-a", "--json"});
    EXPECT_EQ(after.out.find("\"" + name + "\""), std::string::npos)
        << "rm -f left " << name << " (killed " << ms << " ms in): " << rm.err;
    // No process of it left: the workload's command line names its status file.
    EXPECT_TRUE(wait_until(
        [&] {
          std::error_code ec;
          for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
            const std::string pid = it->path().filename().string();
            if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
            std::string cmd = read_text(it->path() / "cmdline");
            std::replace(cmd.begin(), cmd.end(), '\0', ' ');
            if (cmd.find(c.status().string()) != std::string::npos && cmd.find("bigmem") != std::string::npos)
              return false;
          }
          return true;
        },
        5s))
        << "a process of the killed restore (" << ms << " ms in) is left";
  }
}

}  // namespace
}  // namespace stasis::test
