// Memory: every kind of mapping (mappings workload), and large anonymous memory (bigmem).
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

// Files behind the mappings are shared with the original, so the original must be stopped
// (no --leave-running: its later writes to the shared file would change the restored one).
TEST(CheckpointMemory, MappingsComeBackWithContentsAndLayout) { check_round_trip(c_workload("mappings")); }

TEST(CheckpointMemory, Bigmem64MiBLeaveRunning) {
  Workload w = c_workload("bigmem", {"64"});
  w.watch = 3500ms;  // longer than one full re-hash period
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(w, how);
}

TEST(CheckpointMemory, Bigmem1GiB) {
  Workload w = c_workload("bigmem", {"1024"});
  w.start_timeout = 90s;  // filling 1 GiB of fresh memory takes seconds here
  w.watch = 5000ms;       // covers a full re-hash of the restored gigabyte
  check_round_trip(w);
}

TEST(CheckpointMemory, Bigmem1GiBZstd) {
  Workload w = c_workload("bigmem", {"1024"});
  w.start_timeout = 90s;
  w.watch = 5000ms;
  RoundTrip how;
  how.dump_options = {"--compress", "zstd"};
  check_round_trip(w, how);
}

}  // namespace
}  // namespace stasis::test
