// Threads caught inside blocking system calls (nanosleep, pipe read, condvar and raw futex
// waits) must resume them correctly: no EINTR, no lost or repeated pipe data.
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

Workload blockers() {
  Workload w = c_workload("blockers");
  w.watch = 3000ms;  // several 1 s sleeps and 200 ms rounds after the restore
  return w;
}

TEST(CheckpointBlockers, DumpStopsOriginalAndRestoreResumesCalls) { check_round_trip(blockers()); }

TEST(CheckpointBlockers, DumpLeaveRunningAndRestoreResumesCalls) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(blockers(), how);
}

// Dumps at several moments, so that the threads are caught at different points of their
// waits (before, inside and after the blocking calls; a later dump catches the sleepers in
// restart_syscall, resumed after the previous dump).
TEST(CheckpointBlockers, RepeatedDumpsAllResume) {
  Workload w = blockers();
  w.watch = 2200ms;
  check_repeated_dumps(w, 3);
}

}  // namespace
}  // namespace stasis::test
