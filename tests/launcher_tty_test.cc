// `stasis run -t`, `attach` and `logs`, driven as a user would: from a terminal (a pty the
// test holds), typing into an interactive shell and reading what it shows.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "tests/launcher_test_util.h"
#include "tests/support/pty_session.h"

namespace stasis::test {
namespace {

using namespace std::chrono_literals;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::vector<std::string> stasis_argv(const TempDir& root, std::vector<std::string> args) {
  args.insert(args.begin(), {stasis_binary(), "--root", root.path().string()});
  return args;
}

// The job's terminal is a real one (stdin a tty, its controlling terminal, the caller's window
// size, resized with it); what is typed runs; its status is run's.
TEST(LauncherTty, RunItGivesTheJobATerminal) {
  TempDir root;
  const std::string name = unique_name("tty");
  ContainerGuard guard(root.path(), name);
  PtySession term;
  ASSERT_TRUE(term.start(stasis_argv(root, {"run", "-it", "--name", name, "sh"}), 31, 97));
  term.type("echo ready-$((6*7))\n");
  ASSERT_TRUE(term.expect("ready-42"));
  term.type("[ -t 0 ] && [ -t 1 ] && echo stdio-is-a-tty; stty size; : </dev/tty && echo ctty-ok\n");
  EXPECT_TRUE(term.expect("stdio-is-a-tty"));
  EXPECT_TRUE(term.expect("31 97"));
  EXPECT_TRUE(term.expect("ctty-ok"));  // /dev/tty opens: the pty is its controlling terminal
  term.resize(40, 120);
  ::usleep(200000);  // SIGWINCH to `stasis run`, which passes the size on
  term.type("stty size\n");
  EXPECT_TRUE(term.expect("40 120"));
  term.type("exit 7\n");
  auto status = term.wait_exit();
  ASSERT_TRUE(status) << term.seen();
  EXPECT_EQ(*status, 7) << term.seen();
  // The monitor copied the terminal's output to the log.
  auto logs = stasis_at(root, {"logs", name});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_TRUE(contains(logs.out, "ready-42")) << logs.out;
}

// Ctrl-c in raw mode is a key for the job's terminal: it interrupts the job's foreground
// command, not `stasis run`.
TEST(LauncherTty, CtrlCGoesToTheJobsForegroundCommand) {
  TempDir root;
  const std::string name = unique_name("ttyc");
  ContainerGuard guard(root.path(), name);
  PtySession term;
  ASSERT_TRUE(term.start(stasis_argv(root, {"run", "-it", "--rm", "--name", name, "sh"})));
  term.type("echo go; sleep 30; echo slept-$((1+1))\n");
  ASSERT_TRUE(term.expect("go"));
  ::usleep(200000);
  term.type("\x03");
  term.type("echo after-$((2+2))\n");
  EXPECT_TRUE(term.expect("after-4", 5s));
  EXPECT_FALSE(contains(term.seen(), "slept-2"));
  term.type("exit\n");
  auto status = term.wait_exit();
  ASSERT_TRUE(status) << term.seen();
}

// Detached with -dit, attached from a terminal, detached with ctrl-p ctrl-q (the job runs on),
// attached again, and the job's end ends attach with its status. Everything is in its log.
TEST(LauncherTty, AttachDetachAndAttachAgain) {
  TempDir root;
  const std::string name = unique_name("att");
  ContainerGuard guard(root.path(), name);
  auto run = stasis_at(root, {"run", "-dit", "--name", name, "sh"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  struct stat st {};
  ASSERT_EQ(::stat((root.path() / (name + ".attach")).c_str(), &st), 0) << "the monitor listens for attach";
  {
    PtySession term;
    ASSERT_TRUE(term.start(stasis_argv(root, {"attach", name})));
    ::usleep(200000);
    term.type("echo first-$((1+1))\n");
    ASSERT_TRUE(term.expect("first-2"));
    term.type("\x10\x11");
    auto status = term.wait_exit();
    ASSERT_TRUE(status) << term.seen();
    EXPECT_EQ(*status, 0);
    EXPECT_TRUE(contains(term.seen(), "detached")) << term.seen();
  }
  auto ps = stasis_at(root, {"ps"});
  EXPECT_TRUE(contains(ps.out, "running")) << ps.out;
  {
    PtySession term;
    ASSERT_TRUE(term.start(stasis_argv(root, {"attach", "--detach-keys", "ctrl-x,x", name})));
    ::usleep(200000);
    // ctrl-p alone is no longer a detach key: it reaches the shell, and we are still attached.
    term.type("echo second-$((2+1))\n");
    ASSERT_TRUE(term.expect("second-3"));
    term.type("exit 5\n");
    auto status = term.wait_exit();
    ASSERT_TRUE(status) << term.seen();
    EXPECT_EQ(*status, 5) << "attach returns the job's status when it ends";
  }
  auto logs = stasis_at(root, {"logs", name});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_TRUE(contains(logs.out, "first-2")) << logs.out;
  EXPECT_TRUE(contains(logs.out, "second-3")) << logs.out;
}

// -it with input that is not a terminal (a pipe): what it says is typed, and its end is the
// terminal's end-of-file key, which ends the shell.
TEST(LauncherTty, PipedInputEndsWithEndOfFile) {
  TempDir root;
  const std::string name = unique_name("pipe");
  ContainerGuard guard(root.path(), name);
  auto r = run_command({"sh", "-c",
                        "printf 'echo piped-$((2*3))\\n' | " + stasis_binary() + " --root " + root.path().string() +
                            " run -it --rm --name " + name + " sh"},
                       20s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, "piped-6")) << r.out;
}

// -d -i without -t: stdin stays open (a pipe), attach writes into it and follows the log; the
// end of attach's input closes the job's stdin.
TEST(LauncherTty, DetachedInteractiveJobWithoutTerminalReadsWhatAttachSends) {
  TempDir root;
  const std::string name = unique_name("stdin");
  ContainerGuard guard(root.path(), name);
  auto run = stasis_at(root, {"run", "-d", "-i", "--name", name, "sh", "-c",
                              "while read l; do echo \"got $l\"; done; echo stdin-closed; exit 6"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  auto r = run_command({"sh", "-c",
                        "printf 'one\\ntwo\\n' | " + stasis_binary() + " --root " + root.path().string() +
                            " attach " + name},
                       20s);
  EXPECT_EQ(r.exit_code, 6) << r.out << r.err;
  EXPECT_EQ(r.out, "got one\ngot two\nstdin-closed\n");
}

TEST(LauncherTty, AttachToAJobWithoutTerminalIsRefused) {
  TempDir root;
  const std::string name = unique_name("noatt");
  ContainerGuard guard(root.path(), name);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "sleep", "30"}).exit_code, 0);
  auto r = stasis_at(root, {"attach", name}, 10s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "has no terminal nor open stdin")) << r.err;
  EXPECT_TRUE(contains(r.err, "stasis logs")) << r.err;
}

TEST(LauncherTty, BadDetachKeysAreAUsageError) {
  TempDir root;
  auto r = stasis_at(root, {"run", "-it", "--detach-keys", "ctrl-1", "sh"}, 10s);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.err, "--detach-keys")) << r.err;
  auto ps = stasis_at(root, {"ps", "-a", "-q"});
  EXPECT_EQ(ps.out, "") << "nothing was started";
}

// logs of a log-file job, and logs -f, which follows until the job ends (bounded).
TEST(LauncherTty, LogsAndLogsFollow) {
  TempDir root;
  const std::string name = unique_name("logs");
  ContainerGuard guard(root.path(), name);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "sh", "-c", "echo first; sleep 1.5; echo second"}).exit_code,
            0);
  ASSERT_TRUE(wait_until([&] { return contains(stasis_at(root, {"logs", name}).out, "first"); }, 10s));
  auto start = std::chrono::steady_clock::now();
  auto follow = stasis_at(root, {"logs", "-f", name}, 20s);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(follow.exit_code, 0) << follow.err;
  EXPECT_EQ(follow.out, "first\nsecond\n");
  EXPECT_LT(took, 10s);
  // Once ended, -f returns at once with the whole log.
  EXPECT_EQ(stasis_at(root, {"logs", "-f", name}, 5s).out, "first\nsecond\n");
}

// A -t job detached: logs -f shows the terminal's output as it comes, until the job ends.
TEST(LauncherTty, LogsFollowOfATerminalJob) {
  TempDir root;
  const std::string name = unique_name("tlogs");
  ContainerGuard guard(root.path(), name);
  ASSERT_EQ(stasis_at(root, {"run", "-dt", "--name", name, "sh", "-c", "echo one; sleep 1; echo two"}).exit_code, 0);
  auto follow = stasis_at(root, {"logs", "-f", name}, 20s);
  EXPECT_EQ(follow.exit_code, 0) << follow.err;
  EXPECT_EQ(follow.out, "one\r\ntwo\r\n");
}

TEST(LauncherTty, LogsOfAForegroundJobSaysWhy) {
  TempDir root;
  const std::string name = unique_name("nolog");
  ContainerGuard guard(root.path(), name);
  ASSERT_EQ(stasis_at(root, {"run", "--name", name, "true"}).exit_code, 0);
  auto r = stasis_at(root, {"logs", name});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "has no log")) << r.err;
}

}  // namespace
}  // namespace stasis::test
