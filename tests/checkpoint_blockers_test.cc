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

// DISABLED: dump without --leave-running cannot stop a multi-threaded container ("tid N did
// not exit within 10 s of SIGKILL"): the killed threads stay zombies still traced by the
// dumper (TracerPid), so PID 1 waits in zap_pid_ns_processes; dump must detach or reap them.
// Enable when dump ends multi-threaded jobs.
TEST(CheckpointBlockers, DISABLED_DumpStopsOriginalAndRestoreResumesCalls) { check_round_trip(blockers()); }

TEST(CheckpointBlockers, DumpLeaveRunningAndRestoreResumesCalls) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(blockers(), how);
}

// Dumps at several moments, so that the threads are caught at different points of their
// waits (before, inside and after the blocking calls).
// DISABLED: a second dump soon after a first one catches the sleeping threads in
// restart_syscall (orig_rax 219, rax -ERESTART_RESTARTBLOCK: the kernel resumed their
// clock_nanosleep after the first dump's interrupt), and the restore of that image makes
// nanosleep return EINTR. Enable when restore resumes restart-block sleeps (for instance by
// re-issuing clock_nanosleep with the time left) instead of failing them with EINTR.
TEST(CheckpointBlockers, DISABLED_RepeatedDumpsAllResume) {
  Workload w = blockers();
  w.watch = 2200ms;
  check_repeated_dumps(w, 3);
}

}  // namespace
}  // namespace stasis::test
