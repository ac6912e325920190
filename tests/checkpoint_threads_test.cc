// Multi-threaded process: 8 workers with their own counters and stacks, same TIDs after restore.
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

TEST(CheckpointThreads, DumpStopsOriginalAndRestoreContinues) { check_round_trip(c_workload("threads")); }

TEST(CheckpointThreads, DumpLeaveRunningAndRestoreContinues) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(c_workload("threads"), how);
}

TEST(CheckpointThreads, RepeatedDumpsAllRestore) {
  Workload w = c_workload("threads");
  w.watch = 1000ms;
  check_repeated_dumps(w, 3);
}

}  // namespace
}  // namespace stasis::test
