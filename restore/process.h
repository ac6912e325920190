// Per-process attributes the stub sets on itself before its address space is replaced:
// umask, working and root directory, personality, name, nice, rlimits. Dumpable comes last,
// injected after the credentials (a change of uid resets it).
#pragma once

#include "core.pb.h"
#include "restore/remote.h"

namespace stasis::restore {

void apply_process_attributes(const pb::TaskCore& core);

// Rlimits are applied last: a lower RLIMIT_NOFILE or RLIMIT_AS must not get in the stub's way.
// A hard limit above the restorer's own cannot be raised without CAP_SYS_RESOURCE: it is
// clamped to ours (the restorer warns about it before starting).
void apply_rlimits(const pb::TaskCore& core);

// PR_SET_DUMPABLE, injected into the leader (the flag belongs to the address space).
void restore_dumpable(Remote& leader, const pb::TaskCore& core);

// Per thread, after its credentials (a change of them clears the parent-death signal): the
// parent-death signal (injected), timer slack (/proc/TID/timerslack_ns) and I/O priority
// (ioprio_set), the last two from outside.
void restore_thread_attributes(Remote& thread, pid_t host_tid, const pb::ThreadCore& core);

// Per process, at the very end: child subreaper (injected), oom_score_adj and coredump_filter
// (/proc/PID), and memory-deny-write-execute last of all (injected: it would refuse the
// writable-then-executable mappings the restore makes).
void restore_late_process_attributes(Remote& leader, pid_t host_pid, const pb::TaskCore& core);

}  // namespace stasis::restore
