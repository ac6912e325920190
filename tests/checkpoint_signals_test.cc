// Signal state: handlers and their flags (SIGTRAP's too), a pending blocked signal, interval
// timers (armed and disarmed), the alternate signal stack, and no handler of the restorer's
// own; POSIX timers with their ids, clocks, notifications and intervals. A foreground restore
// passes SIGINT and SIGTERM on to the job, as a foreground run does.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

Workload signals() {
  Workload w = c_workload("signals");
  w.watch = 2500ms;  // dozens of timer ticks after the restore
  return w;
}

TEST(CheckpointSignals, DumpStopsOriginalAndRestoreKeepsSignalState) { check_round_trip(signals()); }

TEST(CheckpointSignals, DumpLeaveRunningAndRestoreKeepsSignalState) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(signals(), how);
}

TEST(CheckpointSignals, RepeatedDumpsAllRestore) {
  Workload w = signals();
  w.watch = 1200ms;
  check_repeated_dumps(w, 3);
}

// `stasis restore` without -d, as a child of the test; killed (by its pid) and reaped in
// every path.
class ForegroundRestore {
 public:
  ForegroundRestore(const CheckpointEnv& env, const std::filesystem::path& images, const std::string& name) {
    pid_ = fork();
    if (pid_ == 0) {
      int devnull = open("/dev/null", O_RDWR);
      dup2(devnull, 0);
      dup2(devnull, 1);
      execl(stasis_binary().c_str(), "stasis", "--root", env.root().c_str(), "restore", "-D", images.c_str(),
            "--name", name.c_str(), nullptr);
      _exit(127);
    }
  }
  ~ForegroundRestore() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  // Sends sig and waits for the exit; the exit status, or -1 when it is still running.
  int signal_and_wait(int sig, std::chrono::milliseconds timeout) {
    kill(pid_, sig);
    int status = 0;
    if (!wait_until([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout)) return -1;
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
};

// Ctrl-C or SIGTERM to a foreground restore reaches the job, as with a foreground run: the
// workload dies of it (no handler for either) and restore exits with 128 + the signal. With
// --init: a PID 1 without a handler would ignore both, restored or not.
TEST(CheckpointSignals, ForegroundRestorePassesSignalsOnToTheJob) {
  CheckpointEnv env;
  Container original(env, "fg");
  ASSERT_TRUE(original.run(signals(), {"--init"}));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 20s, &n));
  const auto images = env.image_dir("fg");
  ASSERT_TRUE(original.dump(images));
  ASSERT_TRUE(original.wait_gone());
  for (int sig : {SIGTERM, SIGINT}) {
    SCOPED_TRACE(strsignal(sig));
    clear_status(original.status());
    // Not restored through Container: `stasis rm -f` of the name at the end, after the
    // restore process is gone, instead.
    struct Removed {
      const CheckpointEnv& env;
      std::string name;
      ~Removed() { env.stasis({"rm", "-f", name}); }
    } restored{env, env.unique_name("fg-restored")};
    ForegroundRestore restore(env, images, restored.name);
    ASSERT_TRUE(wait_for_progress(original.status(), n, 30s, nullptr, n)) << "the foreground restore did not run";
    EXPECT_EQ(restore.signal_and_wait(sig, 10s), 128 + sig) << "stasis restore did not end after the signal";
  }
}

Workload posix_timers() {
  Workload w = c_workload("posix_timers");
  w.watch = 1500ms;  // the workload checks that both timers fire every half second
  return w;
}

TEST(CheckpointSignals, PosixTimersComeBack) {
  STASIS_REQUIRE_FEATURE("timer-restore-ids");
  check_round_trip(posix_timers());
}

TEST(CheckpointSignals, PosixTimersLeaveRunning) {
  STASIS_REQUIRE_FEATURE("timer-restore-ids");
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(posix_timers(), how);
}

}  // namespace
}  // namespace stasis::test
