// Every workload, run as a plain host process for a moment, reports "ok" with rising progress
// and no FAIL: the workloads' own checks hold before any checkpoint is involved.
#include <gtest/gtest.h>

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
