// Seccomp: a thread's mode and, in filter mode, its filters, oldest first
// (PTRACE_SECCOMP_GET_FILTER and _GET_METADATA; they need CAP_SYS_ADMIN and a stopped thread).
// The dump seizes such a thread with PTRACE_O_SUSPEND_SECCOMP (seize.cc), so that the system
// calls it injects never meet the filters.
#pragma once

#include <sys/types.h>

#include "seccomp.pb.h"

namespace stasis::dump {

// mode: the thread's "Seccomp:" line in /proc/PID/task/TID/status. Refuses a filter that hands
// system calls to a supervisor (SECCOMP_RET_USER_NOTIF): the supervisor holds the other end.
pb::ThreadSeccomp collect_seccomp(pid_t tid, int mode);

}  // namespace stasis::dump
