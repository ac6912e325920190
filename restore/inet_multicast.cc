#include "restore/inet_multicast.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "common/compat.h"
#include "common/error.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/ns_thread.h"

namespace stasis::restore {

namespace {

sockaddr_storage address_of(const std::string& bytes, const std::string& what) {
  sockaddr_storage ss{};
  if (bytes.size() == sizeof(in_addr)) {
    auto& sin = reinterpret_cast<sockaddr_in&>(ss);
    sin.sin_family = AF_INET;
    std::memcpy(&sin.sin_addr, bytes.data(), bytes.size());
  } else if (bytes.size() == sizeof(in6_addr)) {
    auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
    sin6.sin6_family = AF_INET6;
    std::memcpy(&sin6.sin6_addr, bytes.data(), bytes.size());
  } else {
    fail("{}: an address of {} bytes in the image", what, bytes.size());
  }
  return ss;
}

std::string text_of(const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, text, sizeof text);
  else ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, text, sizeof text);
  return text;
}

void join(int s, const pb::MulticastMembership& m, unsigned int ifindex, const std::string& where) {
  const sockaddr_storage group = address_of(m.group(), where);
  const std::string what = fmt::format("{}: multicast group {} on {}", where, text_of(group), m.interface());
  const int level = group.ss_family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
  group_req req{};
  req.gr_interface = ifindex;
  req.gr_group = group;
  if (::setsockopt(s, level, MCAST_JOIN_GROUP, &req, sizeof req) < 0) fail_errno(errno, "{}: join it again", what);
  if (!m.include() && m.sources().empty()) return;  // a plain join: all sources
  std::vector<std::byte> buffer(offsetof(group_filter, gf_slist) +
                                std::max<size_t>(1, static_cast<size_t>(m.sources_size())) * sizeof(sockaddr_storage));
  auto* gf = reinterpret_cast<group_filter*>(buffer.data());
  gf->gf_interface = ifindex;
  gf->gf_group = group;
  gf->gf_fmode = m.include() ? MCAST_INCLUDE : MCAST_EXCLUDE;
  gf->gf_numsrc = static_cast<uint32_t>(m.sources_size());
  for (int i = 0; i < m.sources_size(); ++i) gf->gf_slist[i] = address_of(m.sources(i), what);
  if (::setsockopt(s, level, MCAST_MSFILTER, gf, static_cast<socklen_t>(buffer.size())) < 0)
    fail_errno(errno, "{}: set its source filter ({} mode, {} source(s))", what, m.include() ? "include" : "exclude",
               m.sources_size());
}

}  // namespace

void rejoin_multicast_groups(const RestoreTree& tree, const std::map<pid_t, pid_t>& host_pids, pid_t netns_pid) {
  std::set<uint64_t> done;  // a socket shared by several processes joins once
  std::map<std::string, unsigned int> ifindex;  // by interface name, in the job's namespace
  for (const auto& plan : tree.processes) {
    for (const auto& entry : plan.task.fds) {
      if (entry.kind() != pb::FdEntry::INET_SOCKET || done.count(entry.file_id())) continue;
      auto it = plan.files.inet_sockets.find(entry.file_id());
      if (it == plan.files.inet_sockets.end() || it->second.memberships().empty()) continue;
      done.insert(entry.file_id());
      const std::string where = fmt::format("pid {} fd {}", plan.task.pid(), entry.fd());
      for (const auto& m : it->second.memberships()) {
        if (!ifindex.count(m.interface())) {
          unsigned int index = 0;
          run_in_namespaces(netns_pid, {"net"}, [&] { index = ::if_nametoindex(m.interface().c_str()); });
          if (index == 0)
            fail("{}: the job's socket is a member of a multicast group on interface {}, which the restored network "
                 "namespace does not have",
                 where, m.interface());
          ifindex[m.interface()] = index;
        }
      }
      auto host = host_pids.find(plan.task.pid());
      if (host == host_pids.end()) fail("{}: no host pid for it", where);
      UniqueFd pidfd(compat::sys_pidfd_open(host->second, 0));
      if (!pidfd) fail_errno(errno, "{}: pidfd_open of host pid {}", where, host->second);
      UniqueFd sock(compat::sys_pidfd_getfd(pidfd.get(), entry.fd(), 0));
      if (!sock) fail_errno(errno, "{}: pidfd_getfd", where);
      for (const auto& m : it->second.memberships()) join(sock.get(), m, ifindex.at(m.interface()), where);
      log::debug("{}: joined {} multicast group(s) again", where, it->second.memberships_size());
    }
  }
}

}  // namespace stasis::restore
