// The container side of dump and restore: paused containers (dumped, and left paused).
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

// What `stasis ps` shows for a container ("running", "frozen", ...), or "" when not listed.
std::string ps_status(const CheckpointEnv& env, const std::string& name) {
  CommandResult r = env.stasis({"ps"}, 20s);
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

// The other two ways back to paused: the v2 freezer, and (as on kernels before 6.8 with v1)
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

// A dump that fails (the job holds a socket) leaves a paused container paused and untraced.
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

}  // namespace
}  // namespace stasis::test
