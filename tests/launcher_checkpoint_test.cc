// The container side of dump and restore: the log a dumped job leaves (kept, continued by the
// restored container, copied for a copy beside the original), paused containers (dumped, and
// left paused), and a second copy of a --net veth container with its own link and addresses.
#include <gtest/gtest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

// True when the log's lines are "line 1", "line 2", ... with none missing or repeated.
::testing::AssertionResult lines_continue(const std::string& log) {
  std::istringstream in(log);
  unsigned long long want = 1;
  for (std::string line; std::getline(in, line); ++want) {
    if (line != "line " + std::to_string(want))
      return ::testing::AssertionFailure() << "line " << want << " of the log is '" << line << "'";
  }
  if (want < 3) return ::testing::AssertionFailure() << "the log is almost empty: '" << log << "'";
  return ::testing::AssertionSuccess();
}

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// What `stasis ps` shows for a container ("running", "frozen", ...), or "" when not listed.
std::string ps_status(const CheckpointEnv& env, const std::string& name) {
  CommandResult r = env.stasis({"ps", "-a"}, 20s);
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string first, second;
    words >> first >> second;
    if (first == name) return second;
  }
  return "";
}

std::string tracer_of(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(in, line);)
    if (line.rfind("TracerPid:", 0) == 0) return line.substr(line.find_last_of(" \t") + 1);
  return "?";
}

// The status file must not move for `duration` (a paused job writes nothing).
::testing::AssertionResult stays_still(const fs::path& status, std::chrono::milliseconds duration) {
  WorkloadStatus before = read_status(status);
  std::this_thread::sleep_for(duration);
  WorkloadStatus after = read_status(status);
  if (before.raw == after.raw) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "the paused job ran: its status went from '" << before.raw << "' to '"
                                       << after.raw << "'";
}

// `stasis restore` that fails after the container was started (an injected fault).
CommandResult failing_restore(const CheckpointEnv& env, const fs::path& dir, const std::string& name) {
  std::vector<std::string> argv{"env", "STASIS_FAULT=restore-after-memory", stasis_binary(), "--root",
                                env.root().string(), "restore", "-D", dir.string(), "-d"};
  if (!name.empty()) argv.insert(argv.end(), {"--name", name});
  return run_command(argv, 60s);
}

// ---- the log ------------------------------------------------------------------------------

// The dump keeps the log; the job restored under its name appends to it: what it printed
// before the dump is still there, once, and it goes on from where it was.
TEST(LauncherCheckpoint, RestoredContainerAppendsToTheDumpedLog) {
  CheckpointEnv env;
  Container original(env, "log");
  ASSERT_TRUE(original.run(c_workload("launcher_log")));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 20, 20s, &n));
  const fs::path log = env.root() / (original.name() + ".log");
  ASSERT_TRUE(original.dump(env.image_dir("log")));
  ASSERT_TRUE(original.wait_gone());
  ASSERT_TRUE(fs::exists(log)) << "the dump deleted the container's log";
  const std::string before = read_text(log);
  ASSERT_NE(before.find("line 20\n"), std::string::npos) << before;

  // A restore that fails leaves the log as it was.
  CommandResult failed = failing_restore(env, env.image_dir("log"), "");
  EXPECT_EQ(failed.exit_code, 1) << failed.err;
  EXPECT_EQ(read_text(log), before) << "a failed restore changed or removed the kept log";

  // Under the dumped name (the default); `original`'s destructor removes it.
  clear_status(original.status());
  auto r = env.stasis({"restore", "-D", env.image_dir("log").string(), "-d"}, 60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(wait_for_progress(original.status(), n, 20s, &n, n));
  // The monitor copies the job's output into the log: it may be a moment behind the status.
  std::string after;
  EXPECT_TRUE(wait_until([&] { return (after = read_text(log)).find(fmt::format("line {}\n", n)) != std::string::npos; },
                         10s))
      << "the restored job does not write to the log";
  EXPECT_EQ(after.rfind(before, 0), 0u) << "the restored container did not append to the log";
  EXPECT_TRUE(lines_continue(after)) << "the job's earlier output is missing or repeated";

  // The log is the container's: rm removes it with the container.
  ASSERT_EQ(env.stasis({"rm", "-f", original.name()}).exit_code, 0);
  EXPECT_FALSE(fs::exists(log));
}

// The same for a --rm container, whose monitor cleans up as the dump kills the job.
TEST(LauncherCheckpoint, DumpOfAnRmContainerKeepsItsLog) {
  CheckpointEnv env;
  Container original(env, "logrm");
  ASSERT_TRUE(original.run(c_workload("launcher_log"), {"--rm"}));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 5, 20s, &n));
  ASSERT_TRUE(original.dump(env.image_dir("logrm")));
  ASSERT_TRUE(original.wait_gone());
  const fs::path log = env.root() / (original.name() + ".log");
  ASSERT_TRUE(fs::exists(log)) << "the --rm monitor deleted the dumped container's log";
  const std::string before = read_text(log);
  clear_status(original.status());
  auto r = env.stasis({"restore", "-D", env.image_dir("logrm").string(), "-d"}, 60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(wait_for_progress(original.status(), n, 20s, &n, n));
  const std::string after = read_text(log);
  EXPECT_EQ(after.rfind(before, 0), 0u);
  EXPECT_TRUE(lines_continue(after));
}

// A copy restored under a new name while the original still exists starts from a copy of the
// original's log; the original's log is untouched and goes on growing.
TEST(LauncherCheckpoint, CopyBesideTheOriginalStartsFromACopyOfItsLog) {
  CheckpointEnv env;
  Container original(env, "logsrc");
  ASSERT_TRUE(original.run(c_workload("launcher_log")));
  ASSERT_TRUE(wait_for_progress(original.status(), 10));
  ASSERT_TRUE(original.dump(env.image_dir("copy"), {"--leave-running"}));
  const fs::path original_log = env.root() / (original.name() + ".log");
  const std::string at_dump = read_text(original_log);

  Container copy(env, "logcopy");
  ASSERT_TRUE(copy.restore(env.image_dir("copy"), original.status(), accept_rewritten_status(original.status())));
  const fs::path copy_log = env.root() / (copy.name() + ".log");
  ASSERT_TRUE(wait_until([&] { return read_text(copy_log).size() > at_dump.size() + 40; }, 20s))
      << "the copy writes nothing to " << copy_log;
  // The original's output up to the dump, then the copy's own: what the original printed
  // after the dump is not the copy's.
  EXPECT_TRUE(lines_continue(read_text(copy_log)));
  EXPECT_TRUE(fs::exists(original_log));
  const std::string original_now = read_text(original_log);
  EXPECT_EQ(original_now.rfind(at_dump, 0), 0u) << "the original's log was changed";
  EXPECT_EQ(count_of(original_now, "line 1\n"), 1u) << "the copy wrote into the original's log";
  ASSERT_TRUE(wait_until([&] { return read_text(original_log).size() > original_now.size(); }, 10s))
      << "the original stopped writing to its log";
  // A log already under the new name (another dumped container's) is not overwritten.
  const std::string other = env.unique_name("logtaken");
  const fs::path other_log = env.root() / (other + ".log");
  { std::ofstream(other_log) << "kept\n"; }
  std::vector<std::string> args{"restore", "-D", env.image_dir("copy").string(), "--name", other, "-d"};
  for (const auto& a : accept_rewritten_status(original.status())) args.push_back(a);  // the original runs on
  auto r = env.stasis(args);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find(other_log.string()), std::string::npos) << r.err;
  EXPECT_EQ(read_text(other_log), "kept\n");
  EXPECT_FALSE(fs::exists(env.root() / (other + ".state")));
}

// Restored under a new name once the original is gone, the job keeps its log, now under the
// new container's name; a failed restore leaves the kept log as it was.
TEST(LauncherCheckpoint, LogMovesToTheNewNameAndSurvivesAFailedRestore) {
  CheckpointEnv env;
  Container original(env, "logmv");
  ASSERT_TRUE(original.run(c_workload("launcher_log")));
  ASSERT_TRUE(wait_for_progress(original.status(), 10));
  ASSERT_TRUE(original.dump(env.image_dir("mv")));
  ASSERT_TRUE(original.wait_gone());
  const fs::path old_log = env.root() / (original.name() + ".log");
  ASSERT_TRUE(fs::exists(old_log));
  const std::string at_dump = read_text(old_log);

  // A restore that fails leaves the log where it was.
  const std::string failed_name = env.unique_name("logmv-bad");
  CommandResult failed = failing_restore(env, env.image_dir("mv"), failed_name);
  EXPECT_EQ(failed.exit_code, 1) << failed.err;
  EXPECT_EQ(read_text(old_log), at_dump);
  EXPECT_FALSE(fs::exists(env.root() / (failed_name + ".log")));

  Container moved(env, "logmv-new");
  ASSERT_TRUE(moved.restore(env.image_dir("mv"), original.status()));
  const fs::path new_log = env.root() / (moved.name() + ".log");
  ASSERT_TRUE(wait_until([&] { return read_text(new_log).size() > at_dump.size(); }, 20s));
  EXPECT_EQ(read_text(new_log).rfind(at_dump, 0), 0u);
  EXPECT_TRUE(lines_continue(read_text(new_log)));
  EXPECT_FALSE(fs::exists(old_log)) << "the log should have moved to the new name";
}

// Restored under another state root, the dumping one gone (as after a move to another host),
// the job starts a new log there instead of failing on the old path.
TEST(LauncherCheckpoint, RestoreUnderAnotherRootStartsANewLog) {
  CheckpointEnv env;
  TempDir roots("stasis-roots");
  const fs::path first = roots.path() / "first", second = roots.path() / "second";
  const std::string name = env.unique_name("logroot");
  struct Remove {
    fs::path root;
    std::string name;
    ~Remove() { run_stasis({"--root", root.string(), "rm", "-f", name}, 20s); }
  } remove_first{first, name}, remove_second{second, name};
  const fs::path status = env.status_path(name);
  auto argv = c_workload("launcher_log").argv(status);
  std::vector<std::string> run{"--root", first.string(), "run", "-d", "--name", name, "--"};
  run.insert(run.end(), argv.begin(), argv.end());
  ASSERT_EQ(run_stasis(run).exit_code, 0);
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(status, 5, 20s, &n));
  CommandResult r = run_stasis({"--root", first.string(), "dump", name, "-D", env.image_dir("root").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(wait_until([&] { return !fs::exists(first / (name + ".state")); }, 10s));
  fs::remove_all(first);
  clear_status(status);
  r = run_stasis({"--root", second.string(), "restore", "-D", env.image_dir("root").string(), "-d"}, 60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(wait_for_progress(status, n, 20s, &n, n));
  // The first count after the restore may be the one the job was writing when it was dumped,
  // whose line went to the old log: the next one is the restored job's own.
  ASSERT_TRUE(wait_for_progress(status, n, 20s, &n, n));
  // The monitor copies the job's output into the log: it may be a moment behind the status.
  std::string log;
  EXPECT_TRUE(wait_until(
      [&] { return (log = read_text(second / (name + ".log"))).find(fmt::format("line {}\n", n)) != std::string::npos; },
      10s))
      << log;
  EXPECT_EQ(log.find("line 1\n"), std::string::npos) << "the new log should hold only the restored job's output";
}

// A new `run` under the name of a dumped container starts with an empty log.
TEST(LauncherCheckpoint, NewRunUnderADumpedNameStartsAFreshLog) {
  CheckpointEnv env;
  Container original(env, "logfresh");
  ASSERT_TRUE(original.run(c_workload("launcher_log")));
  ASSERT_TRUE(wait_for_progress(original.status(), 5));
  ASSERT_TRUE(original.dump(env.image_dir("fresh")));
  ASSERT_TRUE(original.wait_gone());
  auto r = env.stasis({"run", "-d", "--name", original.name(), "--", "/bin/echo", "fresh"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const fs::path log = env.root() / (original.name() + ".log");
  ASSERT_TRUE(wait_until([&] { return read_text(log) == "fresh\n"; }, 10s)) << read_text(log);
}

// ---- paused containers ----------------------------------------------------------------------

TEST(LauncherCheckpoint, PausedContainerIsDumpedAndStaysPaused) {
  CheckpointEnv env;
  Container original(env, "paused");
  ASSERT_TRUE(original.run(c_workload("counter")));
  ASSERT_EQ(env.stasis({"freeze", original.name()}).exit_code, 0);
  ASSERT_TRUE(original.dump(env.image_dir("paused"), {"--leave-running"})) << original.last_output();
  EXPECT_EQ(ps_status(env, original.name()), "frozen");
  EXPECT_TRUE(stays_still(original.status(), 300ms));
  auto pid = original.host_pid();
  ASSERT_TRUE(pid.has_value());
  EXPECT_EQ(tracer_of(*pid), "0");
  ASSERT_EQ(env.stasis({"thaw", original.name()}).exit_code, 0);
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), read_status(original.status()).progress, 10s, &n));

  // The checkpoint of a paused job restores as a running one (as runc's does).
  original.remove();
  clear_status(original.status());
  Container restored(env, "paused-restored");
  ASSERT_TRUE(restored.restore(env.image_dir("paused"), original.status()));
  ASSERT_TRUE(wait_for_progress(restored.status(), 0, 20s));
  EXPECT_EQ(ps_status(env, restored.name()), "running");
}

// `stasis dump NAME -D DIR --leave-running` with STASIS_FAULT set to `fault`.
CommandResult dump_with_fault(const CheckpointEnv& env, const std::string& name, const fs::path& dir,
                              const std::string& fault) {
  return run_command({"env", "STASIS_FAULT=" + fault, stasis_binary(), "--root", env.root().string(), "dump", name,
                      "-D", dir.string(), "--leave-running"},
                     60s);
}

// The other two ways back to paused: the v2 freezer, and (as on kernels before 6.7 with v1)
// freezing right after the threads are let go.
TEST(LauncherCheckpoint, PausedContainerStaysPausedWithTheV2FreezerAndWithALateRefreeze) {
  CheckpointEnv env;
  struct Case {
    std::vector<std::string> run_options;
    std::string fault;
  };
  for (const Case& c : {Case{{"--cgroup-driver", "v2"}, "none"}, Case{{}, "dump-refreeze-after-detach"}}) {
    SCOPED_TRACE(join(c.run_options) + " " + c.fault);
    Container original(env, "paused2");
    ASSERT_TRUE(original.run(c_workload("counter"), c.run_options));
    ASSERT_EQ(env.stasis({"freeze", original.name()}).exit_code, 0);
    CommandResult r = dump_with_fault(env, original.name(), env.image_dir(original.name()), c.fault);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(ps_status(env, original.name()), "frozen");
    EXPECT_TRUE(stays_still(original.status(), 300ms));
    auto pid = original.host_pid();
    ASSERT_TRUE(pid.has_value());
    EXPECT_EQ(tracer_of(*pid), "0");
    ASSERT_EQ(env.stasis({"thaw", original.name()}).exit_code, 0);
    ASSERT_TRUE(wait_for_progress(original.status(), read_status(original.status()).progress, 10s));
  }
}

TEST(LauncherCheckpoint, PausedContainerDumpedAndStoppedRestoresRunning) {
  CheckpointEnv env;
  Container original(env, "pstop");
  ASSERT_TRUE(original.run(c_workload("counter")));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 20s, &n));
  ASSERT_EQ(env.stasis({"freeze", original.name()}).exit_code, 0);
  ASSERT_TRUE(original.dump(env.image_dir("pstop"))) << original.last_output();
  ASSERT_TRUE(original.wait_gone());
  n = std::max(n, read_status(original.status()).progress);
  clear_status(original.status());
  Container restored(env, "pstop-restored");
  ASSERT_TRUE(restored.restore(env.image_dir("pstop"), original.status()));
  ASSERT_TRUE(wait_for_progress(restored.status(), n, 20s, &n, n));
}

// A dump that fails (the job holds a packet socket) leaves a paused container paused and untraced.
TEST(LauncherCheckpoint, FailedDumpLeavesAPausedContainerPaused) {
  CheckpointEnv env;
  Container original(env, "pfail");
  ASSERT_TRUE(original.run(c_workload("dump_socket")));
  ASSERT_EQ(env.stasis({"freeze", original.name()}).exit_code, 0);
  EXPECT_FALSE(original.dump(env.image_dir("pfail"), {"--leave-running"}));
  EXPECT_EQ(ps_status(env, original.name()), "frozen");
  EXPECT_TRUE(stays_still(original.status(), 300ms));
  auto pid = original.host_pid();
  ASSERT_TRUE(pid.has_value());
  EXPECT_EQ(tracer_of(*pid), "0");
  ASSERT_EQ(env.stasis({"thaw", original.name()}).exit_code, 0);
  ASSERT_TRUE(wait_for_progress(original.status(), read_status(original.status()).progress, 10s));
}

// ---- --net veth ---------------------------------------------------------------------------

// A TCP round trip from the host to a server started in the container with `stasis exec`.
::testing::AssertionResult reachable(const CheckpointEnv& env, const std::string& name, const std::string& ip) {
  CommandResult server;
  std::thread t(
      [&] { server = env.stasis({"exec", name, "--", workload("launcher_tcp"), "server", ip, "7777"}, 30s); });
  CommandResult client = run_command({workload("launcher_tcp"), "client", ip, "7777", name}, 20s);
  t.join();
  if (client.exit_code == 0 && client.out == "echo:" + name + "\n") return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << name << " at " << ip << ": client exit " << client.exit_code << " '"
                                       << client.out << client.err << "', server exit " << server.exit_code << " '"
                                       << server.out << server.err << "'";
}

std::string host_link_of(const CheckpointEnv& env, const std::string& name) {
  CommandResult ps = env.stasis({"ps", "-a", "--json"}, 20s);
  size_t at = ps.out.find("\"name\": \"" + name + "\"");
  if (at == std::string::npos) return "";
  at = ps.out.find("\"host_ifname\": \"", at);
  if (at == std::string::npos) return "";
  return ps.out.substr(at + 16, ps.out.find('"', at + 16) - at - 16);
}

bool link_exists(const std::string& ifname) {
  return !ifname.empty() && run_command({"ip", "-o", "link", "show", ifname}).exit_code == 0;
}

TEST(LauncherCheckpoint, SecondVethCopyBesideTheFirstGetsItsOwnLinkAndAddress) {
  CheckpointEnv env;
  const int a = ::getpid() % 100 + 20;  // two subnets of our own
  const std::string first_net = fmt::format("10.214.{}", a), second_net = fmt::format("10.214.{}", a + 120);
  Container original(env, "veth");
  ASSERT_TRUE(original.run(c_workload("counter"), {"--net", "veth", "--ip", first_net + ".2/24"}));
  const std::string first_link = host_link_of(env, original.name());
  ASSERT_TRUE(link_exists(first_link));
  ASSERT_TRUE(original.dump(env.image_dir("veth"), {"--leave-running"}));

  // Without new addresses the copy would share the original's subnet, which the host could
  // route to only one of them: refused, with nothing left behind.
  const std::string refused = env.unique_name("veth-same");
  // (The original runs on and rewrites its status file, which the dump may have caught open.)
  std::vector<std::string> args{"restore", "-D", env.image_dir("veth").string(), "--name", refused, "-d"};
  for (const auto& a : accept_rewritten_status(original.status())) args.push_back(a);
  auto r = env.stasis(args);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("another subnet"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(first_link), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(env.root() / (refused + ".state")));

  Container copy(env, "veth-copy");
  std::vector<std::string> options{"--ip", second_net + ".2/24"};
  for (const auto& a : accept_rewritten_status(original.status())) options.push_back(a);
  ASSERT_TRUE(copy.restore(env.image_dir("veth"), original.status(), options)) << copy.last_output();
  const std::string second_link = host_link_of(env, copy.name());
  EXPECT_NE(second_link, first_link);
  EXPECT_TRUE(link_exists(second_link));
  EXPECT_NE(run_command({"ip", "-o", "addr", "show", second_link}).out.find(second_net + ".1/24"), std::string::npos);
  EXPECT_TRUE(reachable(env, original.name(), first_net + ".2"));
  EXPECT_TRUE(reachable(env, copy.name(), second_net + ".2"));

  original.remove();
  copy.remove();
  EXPECT_FALSE(link_exists(first_link)) << "link " << first_link << " left behind";
  EXPECT_FALSE(link_exists(second_link)) << "link " << second_link << " left behind";
}

TEST(LauncherCheckpoint, RestoreIpOptionsNeedVeth) {
  CheckpointEnv env;
  Container original(env, "noveth");
  ASSERT_TRUE(original.run(c_workload("counter")));
  ASSERT_TRUE(original.dump(env.image_dir("noveth"), {"--leave-running"}));
  std::vector<std::string> args{"restore", "-D", env.image_dir("noveth").string(), "--name", env.unique_name("x"),
                                "-d", "--ip", "10.215.0.2/24"};
  // The original runs on and rewrites its status: only the options may fail this restore.
  for (const auto& a : accept_rewritten_status(original.status())) args.push_back(a);
  auto r = env.stasis(args);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--net veth"), std::string::npos) << r.err;
  r = env.stasis({"restore", "-D", env.image_dir("noveth").string(), "--name", "", "-d"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

}  // namespace
}  // namespace stasis::test
