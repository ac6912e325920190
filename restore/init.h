// When the restored process was not PID 1 of its namespace (a `dump --pid` of a host
// process, or a job under --init), PID 1 of the new namespace is this small init: it creates
// the stub with the process's original PID (clone3 set_tid), forwards signals to it and reaps
// orphans, and exits with its status.
#pragma once

#include <sys/types.h>

#include "restore/plan.h"

namespace stasis::restore {

int run_restore_init(const RestorePlan& plan, int control_fd);

// The host PID of the stub created by the init whose host PID is init_pid (bounded wait).
pid_t find_stub_under_init(pid_t init_pid, int timeout_ms);

}  // namespace stasis::restore
