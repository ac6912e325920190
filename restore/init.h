// When the restored job's first process was not PID 1 of its namespace (a `dump --pid` of a
// host process, or a job under --init), PID 1 of the new namespace is this small init: it
// makes the open files its children share with no common ancestor in the tree, creates each
// process whose parent was outside the tree (or PID 1) with its original PID (clone3
// set_tid), forwards signals to the first of them and reaps orphans, and exits with its
// status.
#pragma once

#include <sys/types.h>

#include <map>

#include "restore/tree.h"

namespace stasis::restore {

int run_restore_init(const RestoreTree& tree, int control_fd);

// Namespace pid -> host pid of every process under the container's PID 1 (init_pid), once
// `count` of them are there (bounded wait).
std::map<pid_t, pid_t> find_host_pids(pid_t init_pid, size_t count, int timeout_ms);

}  // namespace stasis::restore
