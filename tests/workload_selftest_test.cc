// Every workload, run as a plain host process for a moment, reports "ok" with rising progress
// and no FAIL: the workloads' own checks hold before any checkpoint is involved.
#include <fcntl.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

struct Case {
  const char* label;
  Workload workload;
};

void run_alone(const Workload& w, std::chrono::milliseconds watch) {
  TempDir dir("stasis-selftest");
  HostProcess p;
  ASSERT_TRUE(p.start(w, dir.path() / (w.name + ".status"), w.start_timeout)) << p.log_tail();
  std::uint64_t progress = 0;
  EXPECT_TRUE(keep_progressing(p.status(), watch, &progress)) << w.name << " log: " << p.log_tail();
  EXPECT_TRUE(p.running()) << w.name << " exited; log: " << p.log_tail();
  p.kill();
}

TEST(WorkloadSelftest, Counter) { run_alone(c_workload("counter"), 1500ms); }
TEST(WorkloadSelftest, Threads) { run_alone(c_workload("threads"), 1500ms); }
TEST(WorkloadSelftest, Mappings) { run_alone(c_workload("mappings"), 1500ms); }
TEST(WorkloadSelftest, Bigmem) { run_alone(c_workload("bigmem", {"64"}), 3000ms); }  // covers a full re-hash
TEST(WorkloadSelftest, Blockers) { run_alone(c_workload("blockers"), 2500ms); }      // > two 1 s sleeps
TEST(WorkloadSelftest, Signals) { run_alone(c_workload("signals"), 1500ms); }
TEST(WorkloadSelftest, Files) { run_alone(c_workload("files"), 1500ms); }
TEST(WorkloadSelftest, Avx) { run_alone(c_workload("avx"), 1500ms); }
TEST(WorkloadSelftest, Python) { run_alone(python_workload(), 1500ms); }
TEST(WorkloadSelftest, Bash) { run_alone(bash_workload(), 1500ms); }

// The checks bite: damage a running workload's state from outside the way a faulty restore
// would, and it must report FAIL with a reason that says what broke.
void expect_fail_after(const Workload& w, const std::function<void(HostProcess&)>& damage, const std::string& reason,
                       std::chrono::milliseconds within = 5s) {
  TempDir dir("stasis-selftest");
  HostProcess p;
  ASSERT_TRUE(p.start(w, dir.path() / (w.name + ".status"), w.start_timeout)) << p.log_tail();
  ASSERT_TRUE(wait_for_progress(p.status(), 0, 5s));
  damage(p);
  auto r = wait_for_progress(p.status(), ~0ULL - 1, within);
  ASSERT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find(reason), std::string::npos) << r.message();
  p.kill();
}

// Start address of the first mapping of `pid` with exactly `len` bytes.
uintptr_t find_mapping(pid_t pid, size_t len) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    unsigned long start = 0, end = 0;
    if (sscanf(line.c_str(), "%lx-%lx", &start, &end) == 2 && end - start == len) return start;
  }
  return 0;
}

TEST(WorkloadSelftest, BigmemDetectsChangedMemory) {
  expect_fail_after(
      c_workload("bigmem", {"16"}),
      [](HostProcess& p) {
        uintptr_t base = find_mapping(p.pid(), 16u << 20);
        ASSERT_NE(base, 0u);
        uint64_t junk = 0x0123456789ABCDEFULL;
        iovec local{&junk, sizeof junk}, remote{reinterpret_cast<void*>(base + 12345 * 8), sizeof junk};
        ASSERT_EQ(process_vm_writev(p.pid(), &local, 1, &remote, 1, 0), static_cast<ssize_t>(sizeof junk));
      },
      "hash of 16 MiB");
}

TEST(WorkloadSelftest, MappingsDetectsChangedSharedFile) {
  expect_fail_after(
      c_workload("mappings"),
      [](HostProcess& p) {
        int fd = open((p.status().string() + ".map-shared").c_str(), O_WRONLY);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(pwrite(fd, "XXXXXXXX", 8, 4096), 8);
        close(fd);
      },
      "file-shared");
}

TEST(WorkloadSelftest, FilesDetectsChangedLog) {
  expect_fail_after(
      c_workload("files"),
      [](HostProcess& p) {
        std::ofstream(p.status().string() + ".log", std::ios::app) << "intruder\n";
      },
      "log size");
}

TEST(WorkloadSelftest, SignalsDetectsExtraSignal) {
  expect_fail_after(
      c_workload("signals"), [](HostProcess& p) { ASSERT_EQ(kill(p.pid(), SIGUSR1), 0); }, "SIGUSR1");
}

TEST(WorkloadSelftest, BlockersDetectsBrokenPipeSequence) {
  expect_fail_after(
      c_workload("blockers"),
      [](HostProcess& p) {
        // Its pipe's write end: pipe() returns two adjacent fds linking to the same pipe.
        auto link_of = [&](int fd) {
          std::error_code ec;
          auto l = std::filesystem::read_symlink("/proc/" + std::to_string(p.pid()) + "/fd/" + std::to_string(fd), ec);
          return ec ? std::string() : l.string();
        };
        int found = -1;
        for (int fd = 3; fd < 64 && found < 0; ++fd)
          if (link_of(fd).rfind("pipe:", 0) == 0 && link_of(fd + 1) == link_of(fd)) found = fd + 1;
        ASSERT_GE(found, 0);
        int w = open(("/proc/" + std::to_string(p.pid()) + "/fd/" + std::to_string(found)).c_str(), O_WRONLY);
        ASSERT_GE(w, 0);
        uint64_t bogus = 1000000;
        ASSERT_EQ(write(w, &bogus, sizeof bogus), 8);
        close(w);
      },
      "pipe sequence");
}

// The protocol's bad-input side: no status path, or a relative one, is a usage error (exit 2).
TEST(WorkloadSelftest, MissingStatusPathIsUsageError) {
  for (const char* name : {"counter", "threads", "mappings", "bigmem", "blockers", "signals", "files", "avx"}) {
    auto r = run_command({workload(name)}, 10s);
    EXPECT_EQ(r.exit_code, 2) << name << ": " << r.err;
    r = run_command({workload(name), "relative/status"}, 10s);
    EXPECT_EQ(r.exit_code, 2) << name << ": " << r.err;
  }
  auto r = run_command({workload("bigmem"), "/tmp/unused-status", "lots"}, 10s);
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

// The harness reads the status file the way the tests rely on.
TEST(WorkloadSelftest, StatusParsing) {
  TempDir dir("stasis-selftest");
  auto path = dir.path() / "s";
  auto put = [&](const char* text) {
    FILE* f = fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fputs(text, f);
    fclose(f);
  };
  EXPECT_EQ(read_status(path).kind, WorkloadStatus::Kind::kMissing);
  put("ok 42\n");
  EXPECT_EQ(read_status(path).kind, WorkloadStatus::Kind::kOk);
  EXPECT_EQ(read_status(path).progress, 42u);
  put("ok 4");  // half-written
  EXPECT_EQ(read_status(path).kind, WorkloadStatus::Kind::kMissing);
  put("FAIL pipe sequence: got 3, expected 2\n");
  EXPECT_EQ(read_status(path).kind, WorkloadStatus::Kind::kFail);
  EXPECT_EQ(read_status(path).reason, "pipe sequence: got 3, expected 2");
  auto r = wait_for_progress(path, 0, 100ms);
  EXPECT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("pipe sequence"), std::string::npos) << r.message();
  put("ok 5\n");
  r = wait_for_progress(path, 1, 100ms, nullptr, 10);
  EXPECT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("restarted"), std::string::npos) << r.message();
}

}  // namespace
}  // namespace stasis::test
