// Checkpoint basics with the single-threaded counter: dump (stopping the original or leaving
// it running), restore, compression, a second generation, a host process dumped by PID, and
// clear errors for bad input.
#include <gtest/gtest.h>

#include <fstream>
#include <optional>

#include "common/cgroup.h"
#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

TEST(CheckpointBasic, CounterDumpStopsOriginalAndRestoreContinues) {
  check_round_trip(c_workload("counter"));
}

TEST(CheckpointBasic, CounterDumpLeaveRunningAndRestoreContinues) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(c_workload("counter"), how);
}

TEST(CheckpointBasic, CounterUncompressed) {
  RoundTrip how;
  how.dump_options = {"--compress", "none"};
  check_round_trip(c_workload("counter"), how);
}

TEST(CheckpointBasic, CounterCompressedLz4) {
  RoundTrip how;
  how.dump_options = {"--compress", "lz4"};
  check_round_trip(c_workload("counter"), how);
}

TEST(CheckpointBasic, CounterCompressedZstd) {
  RoundTrip how;
  how.dump_options = {"--compress", "zstd"};
  check_round_trip(c_workload("counter"), how);
}

// The container's cgroup limits come back with it.
TEST(CheckpointBasic, MemoryAndPidsLimitsComeBack) {
  RoundTrip how;
  how.run_options = {"--memory", "256M", "--pids", "64"};
  how.after_restore = [](Container& restored) {
    auto read = [](const fs::path& p) {
      std::ifstream in(p);
      std::string v;
      in >> v;
      return v;
    };
    if (auto v1 = restored.cgroup_path("memory")) {
      EXPECT_EQ(read(fs::path(*v1) / "memory.limit_in_bytes"), "268435456");
      auto pids = restored.cgroup_path("pids");
      ASSERT_TRUE(pids.has_value());
      EXPECT_EQ(read(fs::path(*pids) / "pids.max"), "64");
    } else if (auto v2 = restored.cgroup_path("unified")) {
      EXPECT_EQ(read(fs::path(*v2) / "memory.max"), "268435456");
      EXPECT_EQ(read(fs::path(*v2) / "pids.max"), "64");
    } else {
      ADD_FAILURE() << "ps --json shows no cgroup for " << restored.name();
    }
  };
  check_round_trip(c_workload("counter"), how);
}

// Limits written to the container's cgroup after `stasis run` (as a user or a future `stasis
// update` would) are the ones that come back, not those of the run's flags.
TEST(CheckpointBasic, LimitsChangedAfterRunComeBack) {
  // What is written, and read back after the restore: controller, v1 file, v2 file, value.
  struct Limit {
    const char *controller, *v1, *v2, *value;
  };
  const std::vector<Limit> changed{
      {"memory", "memory.limit_in_bytes", "memory.max", "134217728"},
      {"pids", "pids.max", "pids.max", "33"},
      {"cpu", "cpu.cfs_period_us", nullptr, "50000"},  // before the quota: the pair must fit
      {"cpu", "cpu.cfs_quota_us", "cpu.max", nullptr},
      {"cpuset", "cpuset.cpus", "cpuset.cpus", "1"},
  };
  const bool v2 = detect_cgroup_driver() == CgroupDriver::V2;
  auto file_of = [&](Container& c, const Limit& l) -> fs::path {
    auto dir = c.cgroup_path(v2 ? "unified" : l.controller);
    if (!dir) ADD_FAILURE() << "ps --json shows no " << l.controller << " cgroup for " << c.name();
    return dir ? fs::path(*dir) / (v2 ? l.v2 : l.v1) : fs::path();
  };
  // v2 writes the quota and period together; v1 in two files.
  auto value_of = [&](const Limit& l) -> std::string {
    if (l.value) return l.value;
    return v2 ? "20000 50000" : "20000";
  };
  RoundTrip how;
  how.run_options = {"--memory", "256M", "--pids", "64", "--cpus", "0.5", "--cpuset", "0-1"};
  how.before_dump = [&](Container& original) {
    for (const auto& l : changed) {
      if (v2 && !l.v2) continue;
      fs::path file = file_of(original, l);
      std::ofstream out(file);
      out << value_of(l) << std::flush;
      ASSERT_TRUE(out.good()) << "write " << value_of(l) << " to " << file;
    }
  };
  how.after_restore = [&](Container& restored) {
    for (const auto& l : changed) {
      if (v2 && !l.v2) continue;
      fs::path file = file_of(restored, l);
      std::ifstream in(file);
      std::string line;
      std::getline(in, line);
      EXPECT_EQ(line, value_of(l)) << file;
    }
  };
  check_round_trip(c_workload("counter"), how);
}

// Task attributes: parent-death signal, timer slack and I/O priority per thread; subreaper,
// oom_score_adj, coredump_filter and memory-deny-write-execute per process.
TEST(CheckpointBasic, TaskAttributesComeBack) { check_round_trip(c_workload("attrs", {"stasis-test.example"})); }

// A restored container is dumped and restored again: the images of a restored process are
// as good as the first ones.
TEST(CheckpointBasic, SecondGenerationDumpAndRestore) {
  check_generations(c_workload("counter"), 2);
}

// `stasis dump --pid` of a plain host process, restored as a container: it runs in a fresh
// PID namespace where it keeps its old PID.
// The process was not PID 1 of its namespace: restore puts our init there as PID 1 and the
// process, its child, keeps its old PID inside the new namespace.
TEST(CheckpointBasic, HostProcessDumpedByPidRestoresInFreshPidNamespace) {
  CheckpointEnv env;
  HostProcess host;
  ASSERT_TRUE(host.start(c_workload("counter"), env.status_path("host")));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(host.status(), 0, 10s, &n));
  const pid_t old_pid = host.pid();
  fs::path images = env.image_dir("host");
  ASSERT_TRUE(env.dump_pid(old_pid, images)) << host.log_tail();
  ASSERT_TRUE(host.wait_exit(20s)) << "dump --pid without --leave-running must stop the process";
  n = std::max(n, read_status(host.status()).progress);
  clear_status(host.status());

  Container restored(env, "from-host");
  ASSERT_TRUE(restored.restore(images, host.status()));
  ASSERT_TRUE(wait_for_progress(restored.status(), n, 30s, &n, n));
  ASSERT_TRUE(keep_progressing(restored.status(), 1000ms));
  auto pid = restored.host_pid();
  ASSERT_TRUE(pid.has_value()) << "ps --json does not show " << restored.name();
  // ps shows the container's PID 1, our init; the job is its only child.
  std::ifstream children("/proc/" + std::to_string(*pid) + "/task/" + std::to_string(*pid) + "/children");
  pid_t job = -1;
  ASSERT_TRUE(children >> job) << "the restored init (host pid " << *pid << ") has no child";
  EXPECT_EQ(namespace_pid(*pid), 1) << "our init is not PID 1 of the new namespace";
  std::vector<pid_t> nspids = namespace_pids(job);
  ASSERT_GE(nspids.size(), 2u) << "the restored process is not in a PID namespace of its own";
  EXPECT_EQ(nspids.back(), old_pid) << "the restored process lost its PID inside its namespace";
}

// A host process dumped by pid keeps the limits of the cgroup it was in: the restored
// container's cgroup has them.
TEST(CheckpointBasic, HostProcessKeepsItsCgroupLimits) {
  CheckpointEnv env;
  CgroupLimits limits;
  limits.memory_max = 256ll << 20;
  limits.pids_max = 77;
  const CgroupDriver driver = detect_cgroup_driver();
  // Under a parent of the test's own ("stasis-*": destroy() takes it with its last cgroup),
  // not the default root's "stasis", which stasis keeps.
  const std::string parent = "stasis-" + env.unique_name("limits-parent");
  struct Removed {
    std::optional<Cgroup> cgroup;
    ~Removed() {
      if (!cgroup) return;
      cgroup->kill_all();
      cgroup->destroy();
    }
  } own;
  own.cgroup.emplace(Cgroup::create(driver, Cgroup::plan(driver, parent, env.unique_name("limits"), limits), limits));
  HostProcess host;
  ASSERT_TRUE(host.start(c_workload("counter"), env.status_path("host")));
  own.cgroup->add_process(host.pid());
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(host.status(), 0, 10s, &n));
  fs::path images = env.image_dir("host");
  ASSERT_TRUE(env.dump_pid(host.pid(), images)) << host.log_tail();
  ASSERT_TRUE(host.wait_exit(20s));
  clear_status(host.status());
  Container restored(env, "limited");
  ASSERT_TRUE(restored.restore(images, host.status()));
  ASSERT_TRUE(wait_for_progress(restored.status(), n, 30s, nullptr, n));
  const bool v2 = driver == CgroupDriver::V2;
  auto memory = restored.cgroup_path(v2 ? "unified" : "memory");
  auto pids = restored.cgroup_path(v2 ? "unified" : "pids");
  ASSERT_TRUE(memory && pids) << "ps --json shows no cgroup for " << restored.name();
  auto first_line = [](const fs::path& file) {
    std::ifstream in(file);
    std::string line;
    std::getline(in, line);
    return line;
  };
  EXPECT_EQ(first_line(fs::path(*memory) / (v2 ? "memory.max" : "memory.limit_in_bytes")),
            std::to_string(256ll << 20));
  EXPECT_EQ(first_line(fs::path(*pids) / "pids.max"), "77");
}

TEST(CheckpointBasic, HostProcessDumpLeaveRunningKeepsIt) {
  CheckpointEnv env;
  HostProcess host;
  ASSERT_TRUE(host.start(c_workload("counter"), env.status_path("host")));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(host.status(), 0, 10s, &n));
  ASSERT_TRUE(env.dump_pid(host.pid(), env.image_dir("host"), {"--leave-running"})) << host.log_tail();
  ASSERT_TRUE(wait_for_progress(host.status(), n, 10s, &n));
  EXPECT_TRUE(host.running());
  EXPECT_TRUE(fs::exists(env.image_dir("host") / "inventory.img") || !fs::is_empty(env.image_dir("host")))
      << "dump wrote nothing";
}

// Bad input: a clear error and a non-zero exit, never a hang.
TEST(CheckpointBasic, DumpOfUnknownContainerFails) {
  CheckpointEnv env;
  auto r = env.stasis({"dump", "no-such-container", "-D", env.image_dir("x").string()}, 30s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no-such-container"), std::string::npos) << r.err;
}

TEST(CheckpointBasic, RestoreFromEmptyDirectoryFails) {
  CheckpointEnv env;
  fs::path empty = env.image_dir("empty");
  auto r = env.stasis({"restore", "-D", empty.string(), "--name", env.unique_name("empty"), "-d"}, 30s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(empty.string()), std::string::npos) << "the error should name the folder: " << r.err;
}

TEST(CheckpointBasic, RestoreUnderATakenNameFails) {
  CheckpointEnv env;
  Container original(env, "taken");
  ASSERT_TRUE(original.run(c_workload("counter")));
  ASSERT_TRUE(original.dump(env.image_dir("taken"), {"--leave-running"}));
  std::vector<std::string> args{"restore", "-D", env.image_dir("taken").string(), "--name", original.name(), "-d"};
  for (const auto& a : accept_rewritten_status(original.status())) args.push_back(a);  // only the name may fail it
  auto r = env.stasis(args, 60s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(original.name()), std::string::npos) << r.err;
  EXPECT_TRUE(wait_for_progress(original.status(), 0, 5s)) << "the running container must be untouched";
}

}  // namespace
}  // namespace stasis::test
