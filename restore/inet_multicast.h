// The multicast groups of the job's UDP sockets (dump/inet_multicast.h), joined again once the
// restored network namespace has its links back and before the job runs: from outside, on a
// copy of each socket taken with pidfd_getfd (a membership belongs to the socket, whoever
// holds the fd), by interface name resolved in the job's namespace, with the source filter.
#pragma once

#include <sys/types.h>

#include <map>

#include "restore/tree.h"

namespace stasis::restore {

// host_pids: each process's host pid by its pid in the job; netns_pid: a process in the job's
// network namespace. Throws naming pid, fd, group and interface when a join fails (the
// interface missing in the restored namespace, for one).
void rejoin_multicast_groups(const RestoreTree& tree, const std::map<pid_t, pid_t>& host_pids, pid_t netns_pid);

}  // namespace stasis::restore
