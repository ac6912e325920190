// Snapshots that barely stop the job: `dump --leave-running` write-protects the job's private
// anonymous memory with a userfaultfd while it is stopped, thaws it, and copies the pages
// while it runs, each before the job's first write to it lands (dump/background_copy.h). The
// workload (dirtier) rewrites whole random pages all the time and checks every page against
// its own record of generations (in another mapping) every half second: a page copied after a
// write that followed the freeze disagrees with the record of the snapshot, and the restored
// copy fails its check.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The "frozen X.XXXs" of a dump's summary, or -1.
double frozen_seconds(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("frozen ([0-9.]+)s"))) return -1;
  return std::stod(m[1]);
}

// The "memory X.XXXs" phase of a dump's summary (with the job stopped), or -1.
double memory_seconds(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("memory ([0-9.]+)s"))) return -1;
  return std::stod(m[1]);
}

// Write faults answered by the handler, from the summary line, or -1.
long fault_copies(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("([0-9]+) page\\(s\\) copied on the job's first write"))) return -1;
  return std::stol(m[1]);
}

TEST(CheckpointSnapshot, RestoredMemoryIsTheStateAtTheFreezeWhileTheJobWritesOn) {
  CheckpointEnv env;
  Container original(env, "snap");
  // 256 MiB, 256 pages rewritten every 10 ms: about 100 MB/s of writes during the copy.
  ASSERT_TRUE(original.run(c_workload("dirtier", {"256", "256"})));
  std::uint64_t progress = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 20s, &progress));

  // The old way, for comparison: every page copied with the job stopped.
  const fs::path frozen_dir = env.work() / "frozen";
  ASSERT_EQ(::setenv("STASIS_FAULT", "dump-no-background-copy", 1), 0);
  const bool frozen_ok = original.dump(frozen_dir, {"--leave-running", "--compress", "none"});
  ::unsetenv("STASIS_FAULT");
  ASSERT_TRUE(frozen_ok) << original.last_output();
  EXPECT_NE(original.last_output().find("pages copied with the job stopped"), std::string::npos)
      << original.last_output();
  const double frozen_before = frozen_seconds(original.last_output());
  const double memory_before = memory_seconds(original.last_output());

  const fs::path snap = env.work() / "snap";
  ASSERT_TRUE(original.dump(snap, {"--leave-running", "--compress", "none"}));
  const std::string out = original.last_output();
  EXPECT_NE(out.find("pages copied while the job ran"), std::string::npos) << out;
  const double frozen_now = frozen_seconds(out);
  std::printf("frozen: %.3f s with every page copied stopped, %.3f s with the background copy; %ld page(s) copied "
              "on a write fault\n",
              frozen_before, frozen_now, fault_copies(out));
  EXPECT_GT(fault_copies(out), 0) << "the job wrote no protected page during the copy: " << out;
  // What stays stopped of the page copy is the scan and the write-protection (the freeze and
  // the collection, the rest of the frozen time, vary with the load of the machine).
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex("write-protected at the freeze \\(([0-9.]+)s\\)"))) << out;
  EXPECT_LT(std::stod(m[1]) * 2, memory_before) << out;
  ASSERT_TRUE(keep_progressing(original.status(), 700ms, &progress)) << "the job does not run on after the dump";
  original.remove();
  fs::remove(original.status());  // the restored copy counts from the snapshot's progress

  CommandResult verify = env.stasis({"show", "--verify", snap.string()});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  Container restored(env, "snap-r");
  ASSERT_TRUE(restored.restore(snap, original.status(), accept_rewritten_status(original.status()))) << restored.last_output();
  // Six full checks of every page of the restored job.
  EXPECT_TRUE(keep_progressing(restored.status(), 3000ms));
}

// The same for a process of the host (`dump --pid`).
TEST(CheckpointSnapshot, HostProcessByPid) {
  CheckpointEnv env;
  HostProcess host;
  ASSERT_TRUE(host.start(c_workload("dirtier", {"64", "64"}), env.status_path("host")));
  const fs::path snap = env.work() / "snap";
  ASSERT_TRUE(env.dump_pid(host.pid(), snap, {"--leave-running"})) << host.log_tail();
  ASSERT_TRUE(keep_progressing(host.status(), 700ms)) << host.log_tail();
  host.kill();
  fs::remove(host.status());  // the restored copy counts from the snapshot's progress
  Container restored(env, "snap-host-r");
  ASSERT_TRUE(restored.restore(snap, host.status(), accept_rewritten_status(host.status()))) << restored.last_output();
  EXPECT_TRUE(keep_progressing(restored.status(), 2000ms));
}

// A page that changes under the copy without a write (the job unmapped or discarded it)
// makes the checkpoint unable to hold the state at the freeze: the dump starts again, and
// after its last try fails naming the page, writes nothing, and the job runs on. Dumped
// again later, it comes back.
TEST(CheckpointSnapshot, PageGoneDuringTheCopyIsTriedAgainThenRefused) {
  CheckpointEnv env;
  Container c(env, "snap-race");
  ASSERT_TRUE(c.run(c_workload("dirtier", {"16", "64"})));
  std::uint64_t progress = 0;
  ASSERT_TRUE(wait_for_progress(c.status(), 0, 20s, &progress));
  const fs::path dir = env.work() / "raced";
  ::setenv("STASIS_FAULT", "dump-background-copy-race", 1);
  auto r = env.stasis({"dump", c.name(), "-D", dir.string(), "--leave-running"}, 120s);
  ::unsetenv("STASIS_FAULT");
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_NE(r.err.find("changed after the freeze without a write"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("still so after 5 tries"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "inventory.img"));
  EXPECT_TRUE(keep_progressing(c.status(), 1000ms, &progress));

  ASSERT_TRUE(c.dump(dir, {"--leave-running"})) << c.last_output();
  c.remove();
  fs::remove(c.status());
  Container restored(env, "snap-race-r");
  ASSERT_TRUE(restored.restore(dir, c.status())) << restored.last_output();
  EXPECT_TRUE(keep_progressing(restored.status(), 1000ms));
}

// A dumper killed half way through the copy (SIGKILL) leaves no page protected: its
// userfaultfd closes with it and the kernel releases everything; the job writes on.
TEST(CheckpointSnapshot, KilledDuringTheCopyTheJobRunsOn) {
  CheckpointEnv env;
  Container c(env, "snap-kill");
  ASSERT_TRUE(c.run(c_workload("dirtier", {"128", "64"})));
  std::uint64_t progress = 0;
  ASSERT_TRUE(wait_for_progress(c.status(), 0, 20s, &progress));
  const fs::path pause = env.work() / "paused", dir = env.work() / "killed", log = env.work() / "dump.log";
  const pid_t dumper = env.start_paused({"dump", c.name(), "-D", dir.string(), "--leave-running"},
                                        "dump-background-copy", pause, log);
  ASSERT_GT(dumper, 0);
  bool paused = false;
  for (int i = 0; i < 2000 && !paused; ++i) {
    paused = fs::exists(pause);
    if (!paused) std::this_thread::sleep_for(10ms);
  }
  ::kill(dumper, SIGKILL);
  int st = 0;
  ::waitpid(dumper, &st, 0);
  ASSERT_TRUE(paused) << "the dump never reached the middle of its copy: " << read_text(log);
  // A write to a page still protected would wait for ever if anything were left.
  EXPECT_TRUE(keep_progressing(c.status(), 1500ms, &progress));
  std::error_code ec;
  fs::remove(pause, ec);

  // And it dumps again (nothing of the killed dump's userfaultfd is left registered).
  const fs::path again = env.work() / "again";
  ASSERT_TRUE(c.dump(again, {"--leave-running"})) << c.last_output();
  EXPECT_NE(c.last_output().find("pages copied while the job ran"), std::string::npos) << c.last_output();
  c.remove();
  fs::remove(c.status());
  Container restored(env, "snap-kill-r");
  ASSERT_TRUE(restored.restore(again, c.status(), accept_rewritten_status(c.status()))) << restored.last_output();
  EXPECT_TRUE(keep_progressing(restored.status(), 1500ms));
}

}  // namespace
}  // namespace stasis::test

namespace stasis::test {
namespace {

// Whether the process holds a userfaultfd.
bool holds_userfaultfd(pid_t pid) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fmt::format("/proc/{}/fd", pid), ec)) {
    std::error_code ec2;
    if (fs::read_symlink(e.path(), ec2).string() == "anon_inode:[userfaultfd]") return true;
  }
  return false;
}

// The dumper killed (STASIS_FAULT=dump-kill-at-step-N) at each step of the injection that makes
// the job's userfaultfd: the job never keeps the descriptor (which every later dump would
// refuse), and runs on.
TEST(CheckpointSnapshot, KilledAtEachStepOfTheUserfaultfdInjection) {
  CheckpointEnv env;
  HostProcess host;
  ASSERT_TRUE(host.start(c_workload("dirtier", {"16", "16"}), env.status_path("host")));
  CommandResult whole = env.stasis({"-v", "dump", "--pid", std::to_string(host.pid()), "-D",
                                    (env.work() / "whole").string(), "--leave-running"});
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  std::vector<int> counts;  // "injection done in N steps", one per injector (cumulative)
  std::smatch m;
  for (std::string rest = whole.err; std::regex_search(rest, m, std::regex("injection done in ([0-9]+) steps"));
       rest = m.suffix())
    counts.push_back(std::stoi(m[1]));
  ASSERT_EQ(counts.size(), 2u) << whole.err;
  std::uint64_t progress = 0;
  for (int n = counts[0] + 1; n <= counts[1]; ++n) {
    const fs::path dir = env.work() / fmt::format("k{}", n);
    ASSERT_EQ(::setenv("STASIS_FAULT", fmt::format("dump-kill-at-step-{}", n).c_str(), 1), 0);
    CommandResult r = env.stasis({"dump", "--pid", std::to_string(host.pid()), "-D", dir.string(), "--leave-running"});
    ::unsetenv("STASIS_FAULT");
    fs::remove_all(dir);
    EXPECT_FALSE(holds_userfaultfd(host.pid())) << "killed at step " << n;
    ASSERT_TRUE(keep_progressing(host.status(), 150ms, &progress)) << "killed at step " << n << ": " << host.log_tail();
  }
  const fs::path last = env.work() / "last";
  ASSERT_TRUE(env.dump_pid(host.pid(), last, {"--leave-running"})) << host.log_tail();
}

}  // namespace
}  // namespace stasis::test
