// Signal state: handlers and their flags, a pending blocked signal, an interval timer, and
// the alternate signal stack; POSIX timers with their ids, clocks, notifications and intervals.
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

Workload posix_timers() {
  Workload w = c_workload("posix_timers");
  w.watch = 1500ms;  // the workload checks that both timers fire every half second
  return w;
}

TEST(CheckpointSignals, PosixTimersComeBack) {
  STASIS_REQUIRE_FEATURE("timer-restore-ids");
  check_round_trip(posix_timers());
}

TEST(CheckpointSignals, PosixTimersLeaveRunning) {
  STASIS_REQUIRE_FEATURE("timer-restore-ids");
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(posix_timers(), how);
}

}  // namespace
}  // namespace stasis::test
