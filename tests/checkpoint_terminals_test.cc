// The terminal of a `stasis run -t` job is checkpointed: the job comes back on its restored
// container's new terminal (same settings, window size, session and foreground group), and
// `stasis attach` reaches it. Other terminals are refused at dump time: a pty pair held by the
// job, stdio on a terminal, or a controlling terminal alone, naming pid, fd and terminal and
// saying what would help, and the job runs on untouched.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/proc.h"
#include "tests/support/checkpoint_harness.h"
#include "tests/support/pty_session.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A counter started as from an interactive shell: its own session, whose controlling terminal
// is a pty slave; the test holds the master, as a terminal emulator would. Its stdio is on
// the terminal, or on /dev/null and a log, as with `nohup` (and then it may hold /dev/tty
// at fd 3).
enum class Stdio { kTerminal, kRedirected, kRedirectedWithDevTty };
class TerminalProcess {
 public:
  ~TerminalProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st;
      ::waitpid(pid_, &st, 0);
    }
    if (master_ >= 0) ::close(master_);
  }
  ::testing::AssertionResult start(const fs::path& status, Stdio stdio) {
    master_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master_ < 0 || ::grantpt(master_) < 0 || ::unlockpt(master_) < 0)
      return ::testing::AssertionFailure() << "open a pty: " << strerror(errno);
    slave_ = ::ptsname(master_);
    std::vector<std::string> argv = c_workload("counter").argv(status);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    const std::string log = status.string() + ".log";
    pid_ = ::fork();
    if (pid_ < 0) return ::testing::AssertionFailure() << "fork: " << strerror(errno);
    if (pid_ == 0) {
      ::setsid();
      int tty = ::open(slave_.c_str(), O_RDWR);  // the session leader's first terminal: its controlling one
      if (tty < 0) ::_exit(126);
      if (stdio == Stdio::kTerminal) {
        for (int k = 0; k < 3; ++k) ::dup2(tty, k);
      } else {
        int null_fd = ::open("/dev/null", O_RDONLY);
        int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(null_fd, 0);
        ::dup2(log_fd, 1);
        ::dup2(log_fd, 2);
      }
      int keep_from = 3;
      if (stdio == Stdio::kRedirectedWithDevTty && ::dup2(::open("/dev/tty", O_RDWR), 3) == 3) keep_from = 4;
      ::close_range(keep_from, ~0U, 0);
      ::execv(cargv[0], cargv.data());
      ::_exit(127);
    }
    return wait_for_progress(status, 0, 20s);
  }
  pid_t pid() const { return pid_; }
  const std::string& slave() const { return slave_; }

 private:
  pid_t pid_ = -1;
  int master_ = -1;
  std::string slave_;
};

// Dumps the running workload, restores it and checks that it goes on (it checks its ptys).
void check_pty_round_trip(const Workload& w,
                          const std::function<std::vector<std::string>(const CheckpointEnv&)>& run_options = {}) {
  CheckpointEnv env;
  Container c(env, w.name);
  ASSERT_TRUE(c.run(w, run_options ? run_options(env) : std::vector<std::string>{})) << c.last_output();
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(c.status(), 0, 10s, &n));
  const auto dir = env.image_dir(w.name);
  ASSERT_TRUE(c.dump(dir)) << c.last_output();
  ASSERT_TRUE(c.wait_gone());
  ASSERT_TRUE(c.restore(dir, c.status())) << c.last_output();
  EXPECT_TRUE(wait_for_progress(c.status(), n, 10s)) << "the restored job must go on with its ptys";
}

// A job holding both ends of a pty pair (raw mode, a line passed through each iteration).
TEST(CheckpointTerminals, PtyPairComesBack) { check_pty_round_trip(c_workload("pty")); }

// Settings of a pair: termios, window size, packet mode, and a pair left locked.
TEST(CheckpointTerminals, PtySettingsLockAndPacketModeComeBack) { check_pty_round_trip(c_workload("pty_state")); }

// A pty of the job that is a session's controlling terminal, as `script` and tmux make: the
// first process holds the master; its child leads a session on the slave and runs a job in a
// foreground group of its own. Restored, the session has its terminal again (TIOCGSID answers)
// and the job's group is its foreground one (pty_ctty checks both through the terminal).
TEST(CheckpointTerminals, PtyControllingTerminalInsideTheJobComesBack) { check_pty_round_trip(c_workload("pty_ctty")); }

// The real `script` (util-linux): a bash loop on the pty it makes, its controlling terminal.
TEST(CheckpointTerminals, ScriptComesBack) {
  if (::access("/usr/bin/script", X_OK) != 0) GTEST_SKIP() << "script (bsdutils) is not installed";
  Workload w;
  w.name = "script";
  w.program = {"/bin/sh", "-c",
               "SHELL=/bin/bash exec /usr/bin/script -qfc \"/bin/bash " + std::string(STASIS_SOURCE_DIR) +
                   "/tests/workloads/bash_loop.sh $0\" /dev/null"};
  check_pty_round_trip(w);
}

// In a container with its own devpts instance (--rootfs), the pairs keep their numbers.
TEST(CheckpointTerminals, PtyIndexComesBackInTheContainersOwnDevpts) {
  TempDir rootfs("stasis-pty-rootfs");
  const std::string program = workload("pty_state");
  // The workload and its libraries at the same paths inside the tree.
  auto copy_in = [&](const fs::path& file) {
    fs::path dest = rootfs.path() / file.relative_path();
    fs::create_directories(dest.parent_path());
    fs::copy_file(fs::canonical(file), dest, fs::copy_options::overwrite_existing);
    fs::permissions(dest, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
  };
  copy_in(program);
  std::istringstream ldd(run_command({"ldd", program}).out);
  for (std::string word; ldd >> word;)
    if (word[0] == '/') copy_in(word);
  for (const char* d : {"proc", "dev", "tmp", "etc", "sys"}) fs::create_directories(rootfs.path() / d);
  check_pty_round_trip(c_workload("pty_state", {"same-index"}), [&](const CheckpointEnv& env) {
    return std::vector<std::string>{"--rootfs", rootfs.path().string(), "-v",
                                    env.work().string() + ":" + env.work().string()};
  });
}

// Bytes waiting in a pty pair both ways (a finished line, an unfinished one and their echo,
// a line from the slave) come back byte for byte, and the original keeps them too
// (--leave-running: the dump takes them and puts them back).
TEST(CheckpointTerminals, BytesWaitingInAPtyComeBackBothWays) {
  CheckpointEnv env;
  Container c(env, "inflight");
  ASSERT_TRUE(c.run(c_workload("pty_inflight"))) << c.last_output();
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(c.status(), 0, 10s, &n));
  const auto dir = env.image_dir("inflight");
  ASSERT_TRUE(c.dump(dir, {"--leave-running"})) << c.last_output();
  ASSERT_TRUE(wait_for_progress(c.status(), n, 10s, &n)) << "the original's queues are as they were";
  auto original = c.host_pid();
  ASSERT_TRUE(original);
  ::kill(*original, SIGUSR1);  // the original checks every byte, too
  ASSERT_TRUE(wait_for_progress(c.status(), n + 3, 10s, &n)) << "the original's bytes are intact";
  c.remove();
  ASSERT_TRUE(c.restore(dir, c.status())) << c.last_output();
  ASSERT_TRUE(wait_for_progress(c.status(), 0, 10s, &n)) << "the restored queues hold what they held";
  auto restored = c.host_pid();
  ASSERT_TRUE(restored);
  ::kill(*restored, SIGUSR1);
  EXPECT_TRUE(wait_for_progress(c.status(), n + 3, 10s)) << "every byte read back after restore";
}

// `stasis dump --pid` of a program started from an interactive shell: its stdio is the
// terminal. Refused on fd 0, saying how to start it so that it can be checkpointed.
TEST(CheckpointTerminals, StdioOnATerminalIsRefusedWithAHint) {
  CheckpointEnv env;
  TerminalProcess p;
  ASSERT_TRUE(p.start(env.status_path("tty"), Stdio::kTerminal));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(env.status_path("tty"), 0, 10s, &n));
  auto r = env.dump_pid(p.pid(), env.image_dir("tty"));
  ASSERT_FALSE(r) << "a process whose stdio is a terminal was dumped";
  const std::string message = r.message();
  EXPECT_TRUE(contains(message, fmt::format("pid {} fd 0: {} is a terminal (pty slave, its controlling terminal)", p.pid(), p.slave())))
      << message;
  EXPECT_TRUE(contains(message, "setsid")) << message;
  EXPECT_TRUE(contains(message, "stasis run")) << message;
  EXPECT_TRUE(contains(message, "--shell-job")) << message;
  EXPECT_TRUE(wait_for_progress(env.status_path("tty"), n, 10s)) << "the process must run on after a refused dump";
}

// A controlling terminal without any fd on it (stdio redirected, as `nohup` leaves a job):
// the session's terminal cannot come back either; refused, naming it.
TEST(CheckpointTerminals, ControllingTerminalAloneIsRefused) {
  CheckpointEnv env;
  TerminalProcess p;
  ASSERT_TRUE(p.start(env.status_path("ctty"), Stdio::kRedirected));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(env.status_path("ctty"), 0, 10s, &n));
  auto r = env.dump_pid(p.pid(), env.image_dir("ctty"));
  ASSERT_FALSE(r) << "a process with a controlling terminal was dumped";
  const std::string message = r.message();
  EXPECT_TRUE(contains(message, fmt::format("pid {}: it has a controlling terminal ({})", p.pid(), p.slave())))
      << message;
  EXPECT_TRUE(contains(message, "setsid")) << message;
  EXPECT_TRUE(wait_for_progress(env.status_path("ctty"), n, 10s)) << "the process must run on after a refused dump";
}

// /dev/tty held open (stdio redirected): refused on that fd.
TEST(CheckpointTerminals, DevTtyIsRefused) {
  CheckpointEnv env;
  TerminalProcess p;
  ASSERT_TRUE(p.start(env.status_path("devtty"), Stdio::kRedirectedWithDevTty));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(env.status_path("devtty"), 0, 10s, &n));
  auto r = env.dump_pid(p.pid(), env.image_dir("devtty"));
  ASSERT_FALSE(r) << "a process holding /dev/tty was dumped";
  const std::string message = r.message();
  EXPECT_TRUE(contains(message, fmt::format("pid {} fd 3: /dev/tty is a terminal", p.pid()))) << message;
  EXPECT_TRUE(wait_for_progress(env.status_path("devtty"), n, 10s)) << "the process must run on after a refused dump";
}


// `stasis rm -f NAME` at the end of the test, whatever happens.
class RemoveAtEnd {
 public:
  RemoveAtEnd(const CheckpointEnv& env, std::string name) : env_(env), name_(std::move(name)) {}
  ~RemoveAtEnd() { env_.stasis({"rm", "-f", name_}, 30s); }

 private:
  const CheckpointEnv& env_;
  std::string name_;
};

std::vector<std::string> attach_argv(const CheckpointEnv& env, const std::string& name) {
  return {stasis_binary(), "--root", env.root().string(), "attach", name};
}

// Types into an attached terminal, then detaches (ctrl-p ctrl-q): attach must exit 0.
::testing::AssertionResult type_and_detach(PtySession& term, const std::string& keys, const std::string& shown) {
  term.type(keys);
  if (auto r = term.expect(shown); !r) return r;
  term.type("\x10\x11");
  auto status = term.wait_exit();
  if (!status || *status != 0) return ::testing::AssertionFailure() << "attach did not detach: " << term.seen();
  return ::testing::AssertionSuccess();
}

// `stasis dump --pid --shell-job` of a program started from an interactive shell (its stdio
// and controlling terminal a pty the test holds, as a terminal emulator would): the
// terminal's state is saved, and the job comes back as a -t job's on a new terminal, still its
// controlling one, which `stasis attach` reaches; it goes on counting.
TEST(CheckpointTerminals, ShellJobComesBackOnANewTerminal) {
  CheckpointEnv env;
  TerminalProcess p;
  ASSERT_TRUE(p.start(env.status_path("shell"), Stdio::kTerminal));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(env.status_path("shell"), 0, 10s, &n));
  const auto dir = env.image_dir("shell");
  ASSERT_TRUE(env.dump_pid(p.pid(), dir, {"--shell-job"}));
  Container c(env, "shell");
  ASSERT_TRUE(c.restore(dir, env.status_path("shell"))) << c.last_output();
  ASSERT_TRUE(wait_for_progress(env.status_path("shell"), n, 10s)) << "the restored job must go on";
  // The job (our init's child: its pid was not 1) on a terminal that is its controlling one.
  auto init = c.host_pid();
  ASSERT_TRUE(init);
  std::ifstream children_file(fmt::format("/proc/{}/task/{}/children", *init, *init));
  pid_t job = 0;
  children_file >> job;
  ASSERT_GT(job, 0);
  EXPECT_EQ(proc::read_link(fmt::format("/proc/{}/fd/0", job)).rfind("/dev/pts/", 0), 0u);
  const proc::Stat stat = proc::read_stat(job);
  EXPECT_NE(stat.tty_nr, 0) << "the restored job has no controlling terminal";
  EXPECT_EQ(stat.session, job) << "the restored job leads its session again";
  PtySession term;
  ASSERT_TRUE(term.start(attach_argv(env, c.name())));
  ::usleep(200000);
  term.type("\x10\x11");
  auto status = term.wait_exit();
  ASSERT_TRUE(status) << term.seen();
  EXPECT_EQ(*status, 0) << term.seen();
}

// `stasis run -dit bash --norc -i` as name, keys typed through attach (until shown appears),
// detached, then dumped (into the image folder `label`) and restored detached.
::testing::AssertionResult bash_on_tty_dumped_and_restored(const CheckpointEnv& env, const std::string& name,
                                                           const std::string& keys, const std::string& shown,
                                                           const std::string& label) {
  auto run = env.stasis({"run", "-dit", "--name", name, "bash", "--norc", "-i"}, 30s);
  if (run.exit_code != 0) return ::testing::AssertionFailure() << "run: " << run.err;
  {
    PtySession term;
    if (auto r = term.start(attach_argv(env, name)); !r) return r;
    ::usleep(200000);
    if (auto r = type_and_detach(term, keys, shown); !r) return r;
  }
  ::usleep(300000);
  const auto dir = env.image_dir(label);
  auto dump = env.stasis({"dump", name, "-D", dir.string()}, 60s);
  if (dump.exit_code != 0) return ::testing::AssertionFailure() << "dump: " << dump.out << dump.err;
  auto restore = env.stasis({"restore", "-D", dir.string(), "-d"}, 60s);
  if (restore.exit_code != 0) return ::testing::AssertionFailure() << "restore: " << restore.out << restore.err;
  return ::testing::AssertionSuccess();
}

// An interactive bash on -t, checkpointed at its prompt and restored: typing into it through
// attach works, its variables and directory are there, and its terminal is its controlling
// terminal with bash leading the session and its foreground group.
TEST(CheckpointTerminals, InteractiveBashOnATtyComesBackAttached) {
  CheckpointEnv env;
  const std::string name = env.unique_name("bash");
  RemoveAtEnd cleanup(env, name);
  ASSERT_TRUE(bash_on_tty_dumped_and_restored(
      env, name, "PS1='prompt> '; x=remembered-$((6*7)); cd /tmp; echo set-$((1+2))\n", "set-3", "bash"));
  PtySession term;
  ASSERT_TRUE(term.start(attach_argv(env, name)));
  ::usleep(200000);
  term.type("echo $x; pwd; read -r -a s < /proc/$$/stat; echo sid=${s[5]} pg=${s[4]} fg=${s[7]}; "
            ": </dev/tty && echo ctty-ok\n");
  EXPECT_TRUE(term.expect("remembered-42"));
  EXPECT_TRUE(term.expect("/tmp"));
  EXPECT_TRUE(term.expect("sid=1 pg=1 fg=1"));
  EXPECT_TRUE(term.expect("ctty-ok"));
  EXPECT_TRUE(term.expect("prompt> "));
  term.type("exit 3\n");
  auto status = term.wait_exit();
  ASSERT_TRUE(status) << term.seen();
  EXPECT_EQ(*status, 3) << term.seen();
}

// An interactive bash on -t running `sleep` in the foreground (its own process group, the
// terminal's foreground one): restored, ctrl-c reaches sleep, not bash, and bash is back at
// its prompt with sleep's status.
TEST(CheckpointTerminals, ForegroundJobOfAShellStaysInTheForeground) {
  CheckpointEnv env;
  const std::string name = env.unique_name("fg");
  RemoveAtEnd cleanup(env, name);
  // Dumped while sleep runs, in the foreground.
  ASSERT_TRUE(bash_on_tty_dumped_and_restored(env, name, "PS1='prompt> '; echo started-$((1+2)); sleep 1000\n",
                                              "started-3", "fg"));
  PtySession term;
  ASSERT_TRUE(term.start(attach_argv(env, name)));
  ::usleep(300000);
  term.type("\x03");
  EXPECT_TRUE(term.expect("prompt> ")) << "ctrl-c did not end the foreground job";
  term.type("echo status=$?\n");
  EXPECT_TRUE(term.expect("status=130"));
  term.type("exit 4\n");
  auto status = term.wait_exit();
  ASSERT_TRUE(status) << term.seen();
  EXPECT_EQ(*status, 4) << term.seen();
}

// The terminal's settings and window size come back as they were (sh leaves the terminal as
// the user set it, unlike bash, which puts back its own): an attach from a terminal that does
// not know its size leaves the restored one in place.
TEST(CheckpointTerminals, TerminalSettingsAndWindowSizeComeBack) {
  CheckpointEnv env;
  const std::string name = env.unique_name("sh");
  RemoveAtEnd cleanup(env, name);
  auto run = env.stasis({"run", "-dit", "--name", name, "sh"}, 30s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  {
    PtySession term;
    ASSERT_TRUE(term.start(attach_argv(env, name), 33, 111));
    ::usleep(200000);
    ASSERT_TRUE(type_and_detach(term, "stty intr ^X -echoe; echo set-$((1+2))\n", "set-3"));
  }
  const auto dir = env.image_dir("sh");
  auto dump = env.stasis({"dump", name, "-D", dir.string()}, 60s);
  ASSERT_EQ(dump.exit_code, 0) << dump.out << dump.err;
  auto restore = env.stasis({"restore", "-D", dir.string(), "-d"}, 60s);
  ASSERT_EQ(restore.exit_code, 0) << restore.out << restore.err;
  PtySession term;
  ASSERT_TRUE(term.start(attach_argv(env, name), 0, 0));
  ::usleep(200000);
  term.type("stty size; stty -a | grep -o 'intr = [^;]*'; stty -a | grep -o -- '-echoe'\n");
  EXPECT_TRUE(term.expect("33 111"));
  EXPECT_TRUE(term.expect("intr = ^X"));
  EXPECT_TRUE(term.expect("-echoe"));
  term.type("exit\n");
  EXPECT_TRUE(term.wait_exit()) << term.seen();
}

// dump --leave-running of a -t job: the original goes on on its terminal, and a copy restored
// beside it (another name) gets a terminal of its own; each answers on its own.
TEST(CheckpointTerminals, LeaveRunningCopyGetsATerminalOfItsOwn) {
  CheckpointEnv env;
  const std::string name = env.unique_name("orig"), copy = env.unique_name("copy");
  RemoveAtEnd cleanup(env, name), cleanup_copy(env, copy);
  auto run = env.stasis({"run", "-dit", "--name", name, "sh"}, 30s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto dir = env.image_dir("orig");
  auto dump = env.stasis({"dump", name, "-D", dir.string(), "--leave-running"}, 60s);
  ASSERT_EQ(dump.exit_code, 0) << dump.out << dump.err;
  auto restore = env.stasis({"restore", "-D", dir.string(), "-d", "--name", copy}, 60s);
  ASSERT_EQ(restore.exit_code, 0) << restore.out << restore.err;
  for (const std::string& which : {name, copy}) {
    PtySession term;
    ASSERT_TRUE(term.start(attach_argv(env, which)));
    ::usleep(200000);
    ASSERT_TRUE(type_and_detach(term, "echo I-am-$HOSTNAME-$((5*5))\n", "-25")) << which;
  }
  auto logs = env.stasis({"logs", copy});
  EXPECT_TRUE(contains(logs.out, "-25")) << logs.out;
}

// A -d -i job without -t, dumped while it waits on its stdin (a pipe from its monitor):
// restored, its stdin is a pipe from the new monitor, which attach writes into.
TEST(CheckpointTerminals, DetachedInteractiveJobKeepsAnOpenStdin) {
  CheckpointEnv env;
  const std::string name = env.unique_name("stdin");
  RemoveAtEnd cleanup(env, name);
  auto run = env.stasis({"run", "-d", "-i", "--name", name, "sh", "-c",
                         "while read l; do echo \"got $l\"; done; echo stdin-closed; exit 6"},
                        30s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ::usleep(300000);
  const auto dir = env.image_dir("stdin");
  auto dump = env.stasis({"dump", name, "-D", dir.string()}, 60s);
  ASSERT_EQ(dump.exit_code, 0) << dump.out << dump.err;
  auto restore = env.stasis({"restore", "-D", dir.string(), "-d"}, 60s);
  ASSERT_EQ(restore.exit_code, 0) << restore.out << restore.err;
  auto r = run_command({"sh", "-c",
                        "printf 'after\\n' | " + stasis_binary() + " --root " + env.root().string() + " attach " + name},
                       20s);
  EXPECT_EQ(r.exit_code, 6) << r.out << r.err;
  EXPECT_EQ(r.out, "got after\nstdin-closed\n");
}

// Type-ahead: a line typed on the -t terminal while the job sleeps, not read yet at the dump,
// is read by the restored job.
TEST(CheckpointTerminals, TypeAheadOnTheTerminalIsReadAfterRestore) {
  CheckpointEnv env;
  const std::string name = env.unique_name("ahead");
  RemoveAtEnd cleanup(env, name);
  auto run = env.stasis({"run", "-dit", "--name", name, "python3", "-c",
                         "import time\ntime.sleep(4)\nprint('read:' + input())"},
                        30s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  {
    PtySession term;
    ASSERT_TRUE(term.start(attach_argv(env, name)));
    ::usleep(200000);
    ASSERT_TRUE(type_and_detach(term, "ahead\n", "ahead"));  // the terminal's echo
  }
  const auto dir = env.image_dir("ahead");
  auto dump = env.stasis({"dump", name, "-D", dir.string()}, 60s);
  ASSERT_EQ(dump.exit_code, 0) << dump.out << dump.err;
  auto restore = env.stasis({"restore", "-D", dir.string(), "-d"}, 60s);
  ASSERT_EQ(restore.exit_code, 0) << restore.out << restore.err;
  auto wait = env.stasis({"wait", name}, 20s);
  EXPECT_EQ(wait.out, "0\n") << wait.err;
  auto logs = env.stasis({"logs", name});
  EXPECT_TRUE(contains(logs.out, "read:ahead")) << logs.out;
}

// A foreground `stasis restore` of a -t job is attached to it, as `stasis run -it` is.
TEST(CheckpointTerminals, ForegroundRestoreIsAttached) {
  CheckpointEnv env;
  const std::string name = env.unique_name("fg");
  RemoveAtEnd cleanup(env, name);
  auto run = env.stasis({"run", "-dit", "--name", name, "sh"}, 30s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto dir = env.image_dir("fg");
  auto dump = env.stasis({"dump", name, "-D", dir.string()}, 60s);
  ASSERT_EQ(dump.exit_code, 0) << dump.out << dump.err;
  PtySession term;
  ASSERT_TRUE(term.start({stasis_binary(), "--root", env.root().string(), "restore", "-D", dir.string()}));
  ASSERT_TRUE(term.expect("restored"));
  term.type("echo back-$((3+4))\n");
  EXPECT_TRUE(term.expect("back-7"));
  term.type("exit 4\n");
  auto status = term.wait_exit();
  ASSERT_TRUE(status) << term.seen();
  EXPECT_EQ(*status, 4) << term.seen();
}

}  // namespace
}  // namespace stasis::test
