// Signal state: handlers and their flags, a pending blocked signal, an interval timer, and
// the alternate signal stack.
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

Workload signals() {
  Workload w = c_workload("signals");
  w.watch = 2500ms;  // dozens of timer ticks after the restore
  return w;
}

TEST(CheckpointSignals, DumpStopsOriginalAndRestoreKeepsSignalState) { check_round_trip(signals()); }

TEST(CheckpointSignals, DumpLeaveRunningAndRestoreKeepsSignalState) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(signals(), how);
}

TEST(CheckpointSignals, RepeatedDumpsAllRestore) {
  Workload w = signals();
  w.watch = 1200ms;
  check_repeated_dumps(w, 3);
}

}  // namespace
}  // namespace stasis::test
