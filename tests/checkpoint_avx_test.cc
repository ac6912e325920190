// Full register state: the avx workload spends nearly all its time in an asm loop comparing
// ymm0-ymm15 and r12-r15 with a pattern, so the dump catches it there.
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

TEST(CheckpointAvx, RegistersSurviveDumpAndRestore) { check_round_trip(c_workload("avx")); }

TEST(CheckpointAvx, RegistersSurviveDumpLeaveRunning) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(c_workload("avx"), how);
}

// Several dumps in a row of the same running process, each restored: more chances to land
// in the middle of the loop.
TEST(CheckpointAvx, RepeatedDumpsAllRestore) {
  Workload w = c_workload("avx");
  w.watch = 800ms;
  check_repeated_dumps(w, 3);
}

}  // namespace
}  // namespace stasis::test
