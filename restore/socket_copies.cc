#include "restore/socket_copies.h"

#include <set>

#include "common/compat.h"
#include "common/error.h"
#include "common/fd.h"

namespace stasis::restore {

void for_each_socket_copy(const RestoreTree& tree, const std::map<pid_t, pid_t>& host_pids,
                          const std::function<bool(const pb::InetSocket&)>& wanted,
                          const std::function<void(const pb::InetSocket&, int fd, const std::string& where)>& fn) {
  std::set<uint64_t> done;
  for (const auto& plan : tree.processes) {
    for (const auto& entry : plan.task.fds) {
      if (entry.kind() != pb::FdEntry::INET_SOCKET || done.count(entry.file_id())) continue;
      auto it = plan.files.inet_sockets.find(entry.file_id());
      if (it == plan.files.inet_sockets.end() || !wanted(it->second)) continue;
      done.insert(entry.file_id());
      const std::string where = fmt::format("pid {} fd {}", plan.task.pid(), entry.fd());
      auto host = host_pids.find(plan.task.pid());
      if (host == host_pids.end()) fail("{}: no host pid for it", where);
      UniqueFd pidfd(compat::sys_pidfd_open(host->second, 0));
      if (!pidfd) fail_errno(errno, "{}: pidfd_open of host pid {}", where, host->second);
      UniqueFd sock(compat::sys_pidfd_getfd(pidfd.get(), entry.fd(), 0));
      if (!sock) fail_errno(errno, "{}: pidfd_getfd", where);
      fn(it->second, sock.get(), where);
    }
  }
}

}  // namespace stasis::restore
