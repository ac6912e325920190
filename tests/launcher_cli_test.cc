// The habits of a docker user, end to end: `run CMD` without "--", -e/-w/-v, stop, wait,
// inspect, ps -a/-q/--format json, rm of several names.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include "tests/launcher_test_util.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

bool contains(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

TEST(LauncherCli, RunReadsItsOptionsUntilTheCommand) {
  TempDir root;
  std::string name = unique_name("argv");
  ContainerGuard guard(root.path(), name);
  // The job's own options (-c, --version-like words) stay the job's.
  auto r = stasis_at(root, {"run", "--rm", "--name", name, "/bin/sh", "-c", "echo \"$0|$1|$2\"", "zero", "-e", "--rm"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "zero|-e|--rm\n");
  // "--" still works, and options after the command's first word are not ours.
  r = stasis_at(root, {"run", "--rm", "--", "/bin/sh", "-c", "echo dash"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "dash\n");
  r = stasis_at(root, {"run", "--rm", "-w/tmp", "--env=A=1", "sh", "-c", "echo $A; pwd"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n/tmp\n");
  r = stasis_at(root, {"run", "--rm", "python3", "-c", "print(6 * 7)"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "42\n");
  // An unknown option of ours before the command is still a usage error.
  r = stasis_at(root, {"run", "--no-such-option", "true"});
  EXPECT_EQ(r.exit_code, 2);
  // exec: NAME, then the command, without "--" too.
  std::string detached = unique_name("argv");
  ContainerGuard guard2(root.path(), detached);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", detached, "sleep", "100"}).exit_code, 0);
  r = stasis_at(root, {"exec", detached, "sh", "-c", "echo in-$HOSTNAME"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "in-" + detached + "\n");
}

TEST(LauncherCli, ShortEnvAndWorkdir) {
  TempDir root;
  auto r = stasis_at(root, {"run", "--rm", "-e", "A=one", "-e", "B=two words", "-w", "/usr", "sh", "-c",
                            "echo \"$A/$B\"; pwd"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "one/two words\n/usr\n");
  EXPECT_EQ(stasis_at(root, {"run", "--rm", "-e", "NOEQUALS", "true"}).exit_code, 2);
}

TEST(LauncherCli, VolumeOnTheHostFileSystem) {
  TempDir root;
  TempDir source("stasis-vol-src");
  TempDir target("stasis-vol-dst");
  std::ofstream(source.path() / "file") << "from-host\n";
  std::string spec = source.path().string() + ":" + target.path().string();
  auto r = stasis_at(root, {"run", "--rm", "-v", spec, "sh", "-c",
                            "cat " + target.path().string() + "/file; echo new > " + target.path().string() + "/made"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "from-host\n");
  EXPECT_TRUE(fs::exists(source.path() / "made")) << "the write went through the bind mount";
  EXPECT_FALSE(fs::exists(target.path() / "file")) << "the mount stayed in the container";
  // :ro
  r = stasis_at(root, {"run", "--rm", "-v", spec + ":ro", "sh", "-c",
                       "cat " + target.path().string() + "/file; touch " + target.path().string() + "/x 2>/dev/null || echo ro"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "from-host\nro\n");
  // Mistakes are usage errors, and nothing is made.
  EXPECT_EQ(stasis_at(root, {"run", "--rm", "-v", "/no/such/dir:/mnt", "true"}).exit_code, 2);
  EXPECT_EQ(stasis_at(root, {"run", "--rm", "-v", source.path().string() + ":relative", "true"}).exit_code, 2);
  EXPECT_EQ(stasis_at(root, {"run", "--rm", "-v", source.path().string() + ":/no/such/target", "true"}).exit_code, 2);
  EXPECT_EQ(stasis_at(root, {"run", "--rm", "-v", spec + ":rx", "true"}).exit_code, 2);
  EXPECT_EQ(stasis_at(root, {"ps", "-aq"}).out, "");
}

TEST(LauncherCli, VolumeInARootfs) {
  TempDir root;
  TempDir rootfs("stasis-rootfs");
  make_rootfs(rootfs.path());
  TempDir source("stasis-vol-src");
  std::ofstream(source.path() / "file") << "shared\n";
  std::ofstream(source.path() / "single") << "one file\n";
  // Targets missing in the tree are created there (a directory, or a file for a file).
  auto r = stasis_at(root, {"run", "--rm", "--rootfs", rootfs.path().string(), "-v",
                            source.path().string() + ":/data/in:ro", "-v",
                            (source.path() / "single").string() + ":/etc/single", "/bin/sh", "-c",
                            "read a < /data/in/file; echo $a; read b < /etc/single; echo $b; "
                            "echo x > /data/in/new 2>/dev/null || echo ro"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "shared\none file\nro\n");
  EXPECT_TRUE(fs::is_directory(rootfs.path() / "data" / "in"));
  EXPECT_TRUE(fs::is_empty(rootfs.path() / "data" / "in")) << "the mount stayed in the container";
  // A symbolic link in the tree must not lead the mount out of it.
  TempDir outside;  // where the link leads: a folder of the test's own, so that nothing else can hold a file there
  fs::create_directory_symlink(outside.path(), rootfs.path() / "escape");
  r = stasis_at(root, {"run", "--rm", "--rootfs", rootfs.path().string(), "-v",
                       source.path().string() + ":/escape/x", "/bin/sh", "-c", "true"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "leads out of the rootfs")) << r.err;
  EXPECT_FALSE(fs::exists(outside.path() / "x"));
}

TEST(LauncherCli, VolumeIsMountedAgainByRestore) {
  TempDir root;
  TempDir source("stasis-vol-src");
  TempDir target("stasis-vol-dst");
  TempDir images("stasis-vol-ckpt");
  std::ofstream(source.path() / "file") << "kept\n";
  std::string name = unique_name("volck");
  ContainerGuard guard(root.path(), name);
  std::string file = (target.path() / "file").string();
  // A single process (no shell) with nothing open on the mount (that is refused: below).
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "-v", source.path().string() + ":" + target.path().string(),
                             "python3", "-c", "import time\nwhile True: time.sleep(0.05)"})
                .exit_code,
            0);
  EXPECT_TRUE(wait_until([&] { return stasis_at(root, {"exec", name, "test", "-e", file}).exit_code == 0; }, seconds(10)));
  fs::path dir = images.path() / "ckpt";
  // --quiet: no summaries.
  auto r = stasis_at(root, {"dump", name, "-D", dir.string(), "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out + r.err, "");
  r = stasis_at(root, {"restore", "--dir", dir.string(), "-d", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out + r.err, "");
  r = stasis_at(root, {"exec", name, "cat", file});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "kept\n");
  EXPECT_FALSE(fs::exists(target.path() / "file")) << "the mount stayed in the container";
}

TEST(LauncherCli, DumpRefusesAFileHeldOpenThroughAVolume) {
  TempDir root;
  TempDir source("stasis-vol-src");
  TempDir target("stasis-vol-dst");
  TempDir images("stasis-vol-ckpt");
  std::ofstream(source.path() / "file") << "held\n";
  std::string name = unique_name("volopen");
  ContainerGuard guard(root.path(), name);
  std::string file = (target.path() / "file").string();
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "-v", source.path().string() + ":" + target.path().string(),
                             "python3", "-c", "import time\nf = open('" + file + "')\nwhile True: time.sleep(0.05)"})
                .exit_code,
            0);
  // Until python has the file open.
  ASSERT_TRUE(wait_until(
      [&] {
        auto ps = stasis_at(root, {"inspect", name});
        auto at = ps.out.find("\"init_pid\": ");
        if (at == std::string::npos) return false;
        std::string pid = std::to_string(std::stoi(ps.out.substr(at + 12)));
        std::error_code ec;
        for (const auto& fd : fs::directory_iterator(fs::path("/proc") / pid / "fd", ec)) {
          std::error_code link_ec;
          if (fs::read_symlink(fd.path(), link_ec).string() == file) return true;
        }
        return false;
      },
      seconds(10)));
  auto r = stasis_at(root, {"dump", name, "-D", (images.path() / "ckpt").string()});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_TRUE(contains(r.err, file + " is on the bind mount -v")) << r.err;
  EXPECT_TRUE(contains(stasis_at(root, {"ps"}).out, "running")) << "the job was left running";
}

// `stasis ARGS...` with its stdio on a terminal (python's pty.spawn); what the terminal showed.
CommandResult stasis_on_terminal(const TempDir& root, std::vector<std::string> args) {
  // No first-draw delay: the line shows even for a quick phase.
  std::vector<std::string> argv = {"env", "STASIS_PROGRESS_DELAY_MS=0", "python3", "-c",
                                   "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)", STASIS_BINARY, "--root",
                                   root.path().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, seconds(120));
}

TEST(LauncherCli, ProgressOfDumpAndRestoreOnATerminalOnly) {
  TempDir root;
  TempDir images("stasis-progress");
  std::string name = unique_name("progress");
  ContainerGuard guard(root.path(), name);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "python3", "-c",
                             "import time\nb = b'x' * (128 << 20)\nopen('/dev/shm/" + name + "', 'w').close()\n"
                             "while True: time.sleep(0.05)"})
                .exit_code,
            0);
  ASSERT_TRUE(wait_until([&] { return fs::exists("/dev/shm/" + name); }, seconds(30)));
  fs::remove("/dev/shm/" + name);

  // Not a terminal: the summary only.
  auto r = stasis_at(root, {"dump", name, "-D", (images.path() / "a").string(), "--leave-running"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(contains(r.out + r.err, "memory:")) << r.out << r.err;
  EXPECT_FALSE(contains(r.out + r.err, "\r")) << r.out << r.err;
  // A terminal with --quiet: nothing at all.
  r = stasis_on_terminal(root, {"dump", name, "-D", (images.path() / "b").string(), "--leave-running", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "");
  // A terminal: one line redrawn in place ("\r", then erased to its end), cleared before the summary.
  r = stasis_on_terminal(root, {"dump", name, "-D", (images.path() / "c").string(), "--compression", "none"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, "\rdump: memory: ")) << r.out;
  EXPECT_TRUE(contains(r.out, " MiB (")) << r.out;
  EXPECT_TRUE(contains(r.out, "%)\x1b[K") || contains(r.out, " s left\x1b[K")) << r.out;
  EXPECT_TRUE(contains(r.out, "\r\x1b[Kdumped container " + name)) << r.out;
  r = stasis_on_terminal(root, {"restore", "-D", (images.path() / "c").string(), "-d"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, "\rrestore: memory: ")) << r.out;
  EXPECT_TRUE(contains(r.out, "\r\x1b[Krestored ")) << r.out;
}

TEST(LauncherCli, StopKillsAJobThatIgnoresSigtermAfterTheGracePeriod) {
  TempDir root;
  std::string name = unique_name("stop");
  ContainerGuard guard(root.path(), name);
  // PID 1 without a SIGTERM handler ignores it.
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "sleep", "100"}).exit_code, 0);
  auto start = Clock::now();
  auto r = stasis_at(root, {"stop", "-t", "2", name});
  auto took = Clock::now() - start;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GE(took, seconds(2));
  EXPECT_LT(took, seconds(6));
  EXPECT_TRUE(contains(stasis_at(root, {"ps", "-a"}).out, "killed (SIGKILL)")) << stasis_at(root, {"ps", "-a"}).out;
  // Stopping it again is no error.
  EXPECT_EQ(stasis_at(root, {"stop", name}).exit_code, 0);
  EXPECT_EQ(stasis_at(root, {"stop", "no-such-container"}).exit_code, 1);
}

TEST(LauncherCli, StopEndsAJobThatHandlesSigtermAtOnce) {
  TempDir root;
  std::string name = unique_name("stop");
  ContainerGuard guard(root.path(), name);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.05; done"})
                .exit_code,
            0);
  // The shell may not have set its trap yet.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto start = Clock::now();
  auto r = stasis_at(root, {"stop", name});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(Clock::now() - start, seconds(5));
  r = stasis_at(root, {"wait", name});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "3\n");
}

TEST(LauncherCli, WaitPrintsTheExitCode) {
  TempDir root;
  std::string name = unique_name("wait");
  ContainerGuard guard(root.path(), name);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", name, "sh", "-c", "sleep 0.5; exit 7"}).exit_code, 0);
  auto r = stasis_at(root, {"wait", name}, seconds(20));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "7\n");
  // Once ended, at once.
  EXPECT_EQ(stasis_at(root, {"wait", name}).out, "7\n");
  EXPECT_EQ(stasis_at(root, {"wait", "no-such-container"}).exit_code, 1);
}

TEST(LauncherCli, InspectPsAllQuietAndJson) {
  TempDir root;
  std::string running = unique_name("ps");
  std::string ended = unique_name("ps");
  ContainerGuard guard1(root.path(), running);
  ContainerGuard guard2(root.path(), ended);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", running, "sleep", "100"}).exit_code, 0);
  ASSERT_EQ(stasis_at(root, {"run", "--name", ended, "true"}).exit_code, 0);

  auto r = stasis_at(root, {"inspect", running});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, 2), "{\n");
  EXPECT_TRUE(contains(r.out, "\n \"name\": \"" + running + "\"")) << r.out;
  EXPECT_TRUE(contains(r.out, "\"display_status\": \"running\"")) << r.out;
  EXPECT_TRUE(contains(r.out, "\"init_pid\": ")) << r.out;
  EXPECT_EQ(stasis_at(root, {"inspect", "no-such-container"}).exit_code, 1);

  // ps: the running one only; -a both.
  r = stasis_at(root, {"ps"});
  EXPECT_TRUE(contains(r.out, running)) << r.out;
  EXPECT_FALSE(contains(r.out, ended)) << r.out;
  r = stasis_at(root, {"ps", "-a"});
  EXPECT_TRUE(contains(r.out, running) && contains(r.out, ended)) << r.out;
  EXPECT_TRUE(contains(r.out, "exited (0)")) << r.out;
  EXPECT_EQ(stasis_at(root, {"ps", "-q"}).out, running + "\n");
  std::vector<std::string> names = {running, ended};
  std::sort(names.begin(), names.end());
  EXPECT_EQ(stasis_at(root, {"ps", "-aq"}).out, names[0] + "\n" + names[1] + "\n");

  // --format json: an array of what inspect prints (maps in any order: lines compared as sets).
  r = stasis_at(root, {"ps", "--format", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto lines = [](const std::string& text) {
    std::multiset<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == ',') line.pop_back();
      out.insert(line);
    }
    return out;
  };
  EXPECT_EQ(lines(r.out), lines("[\n" + stasis_at(root, {"inspect", running}).out + "]\n")) << r.out;
  EXPECT_EQ(lines(stasis_at(root, {"ps", "--json"}).out), lines(r.out));
  r = stasis_at(root, {"ps", "-a", "--format", "json"});
  EXPECT_TRUE(contains(r.out, "\"name\": \"" + ended + "\"")) << r.out;
  EXPECT_EQ(stasis_at(root, {"ps", "--format", "yaml"}).exit_code, 2);
}

TEST(LauncherCli, RmRemovesWhatItCanAndReportsTheRest) {
  TempDir root;
  std::string a = unique_name("rm"), b = unique_name("rm"), live = unique_name("rm");
  ContainerGuard ga(root.path(), a), gb(root.path(), b), gl(root.path(), live);
  ASSERT_EQ(stasis_at(root, {"run", "--name", a, "true"}).exit_code, 0);
  ASSERT_EQ(stasis_at(root, {"run", "--name", b, "true"}).exit_code, 0);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", live, "sleep", "100"}).exit_code, 0);
  auto r = stasis_at(root, {"rm", a, "no-such-container", live, b});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "no-such-container")) << r.err;
  EXPECT_TRUE(contains(r.err, live + " is running")) << r.err;
  EXPECT_EQ(stasis_at(root, {"ps", "-aq"}).out, live + "\n") << "both ended ones are gone";
  EXPECT_EQ(stasis_at(root, {"rm", "-f", live}).exit_code, 0);
}

TEST(LauncherCli, BashCompletionOffersContainerNames) {
  TempDir root;
  std::string running = unique_name("comp"), ended = unique_name("comp");
  ContainerGuard g1(root.path(), running), g2(root.path(), ended);
  ASSERT_EQ(stasis_at(root, {"run", "-d", "--name", running, "sleep", "100"}).exit_code, 0);
  ASSERT_EQ(stasis_at(root, {"run", "--name", ended, "true"}).exit_code, 0);
  std::string script = "PATH=" + fs::path(STASIS_BINARY).parent_path().string() + ":$PATH\nsource " +
                       STASIS_SOURCE_DIR + "/docs/completion/stasis.bash\n" + R"(
c() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _stasis; echo "${COMPREPLY[*]}"; }
c stasis --root "$1" stop ""
c stasis --root "$1" rm ""
)";
  auto r = run_command({"bash", "-c", script, "bash", root.path().string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> both = {running, ended};
  std::sort(both.begin(), both.end());
  // stop: the running one; rm: every one.
  EXPECT_EQ(r.out, running + "\n" + both[0] + " " + both[1] + "\n");
}

}  // namespace
}  // namespace stasis::test
