// The restorer's own copies of the restored job's sockets (pidfd_getfd), for what is done to
// them from outside once the namespace has its contents back and before the job runs: what
// the socket holds is the same whoever's fd reaches it.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>

#include "inet_socket.pb.h"
#include "restore/tree.h"

namespace stasis::restore {

// Calls fn(record, our copy of the socket, "pid P fd N") once for each TCP or UDP socket of
// the tree that wanted(record) picks (a socket held by several processes, once). host_pids:
// each process's host pid by its pid in the job.
void for_each_socket_copy(const RestoreTree& tree, const std::map<pid_t, pid_t>& host_pids,
                          const std::function<bool(const pb::InetSocket&)>& wanted,
                          const std::function<void(const pb::InetSocket&, int fd, const std::string& where)>& fn);

}  // namespace stasis::restore
