// Multi-threaded process: 8 workers with their own counters and stacks, same TIDs after restore.
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

// DISABLED: dump without --leave-running cannot stop a multi-threaded container ("tid N did
// not exit within 10 s of SIGKILL"): the killed threads stay zombies still traced by the
// dumper (TracerPid), so PID 1 waits in zap_pid_ns_processes; dump must detach or reap them.
// Enable when dump ends multi-threaded jobs.
TEST(CheckpointThreads, DISABLED_DumpStopsOriginalAndRestoreContinues) { check_round_trip(c_workload("threads")); }

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
