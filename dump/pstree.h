// pstree.img: one TaskEntry per process, with ids as seen inside the job's PID namespace.
// Parents come before children (dump/tree.h).
#pragma once

#include <sys/types.h>

#include <vector>

#include "dump/task.h"
#include "pstree.pb.h"

namespace stasis::dump {

// Fills ns_pid, ns_tids, ns_pgid, ns_sid (and ns_ppid = 0: the root of the dump) from
// /proc/PID/status and /proc/PID/task/TID/status (last field of NSpid / NSpgid / NSsid).
void fill_namespace_ids(Task& task);

pb::TaskEntry task_entry(const Task& task);

}  // namespace stasis::dump
