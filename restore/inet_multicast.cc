#include "restore/inet_multicast.h"

#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "launcher/net_lock.h"
#include "common/ns_thread.h"
#include "restore/socket_copies.h"

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

void join(int s, const pb::MulticastMembership& m, unsigned int ifindex, const std::string& where) {
  const sockaddr_storage group = address_of(m.group(), where);
  const std::string what = fmt::format("{}: multicast group {} on {}", where, launcher::ip_address_text(group), m.interface());
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
  std::map<std::string, unsigned int> ifindex;  // by interface name, in the job's namespace
  const auto index_of = [&](const std::string& name, const std::string& where) {
    auto it = ifindex.find(name);
    if (it != ifindex.end()) return it->second;
    unsigned int index = 0;
    run_in_namespaces(netns_pid, {"net"}, [&] { index = ::if_nametoindex(name.c_str()); });
    if (index == 0)
      fail("{}: the job's socket is a member of a multicast group on interface {}, which the restored network "
           "namespace does not have",
           where, name);
    return ifindex[name] = index;
  };
  for_each_socket_copy(
      tree, host_pids, [](const pb::InetSocket& k) { return !k.memberships().empty(); },
      [&](const pb::InetSocket& k, int sock, const std::string& where) {
        for (const auto& m : k.memberships()) join(sock, m, index_of(m.interface(), where), where);
        log::debug("{}: joined {} multicast group(s) again", where, k.memberships_size());
      });
}

}  // namespace stasis::restore
