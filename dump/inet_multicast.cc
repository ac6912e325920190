#include "dump/inet_multicast.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"
#include "launcher/net_lock.h"

namespace stasis::dump {

namespace {

// A group joined on an interface of the namespace by some socket (or by the kernel: the
// all-hosts groups, which no socket is member of).
struct Candidate {
  int ifindex;
  std::string interface;
  sockaddr_storage group;
};

// /proc/PID/net/igmp: "1\tlo        :     1      V3" then "\t\t\t\t010000E0     1 0:00000000\t\t0"
// per group (the address's bytes as one hexadecimal word in memory order).
std::vector<Candidate> ipv4_candidates(pid_t pid) {
  std::vector<Candidate> out;
  std::istringstream in(read_file(fmt::format("/proc/{}/net/igmp", pid)));
  std::string line;
  std::getline(in, line);  // header
  int ifindex = 0;
  std::string name;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] != '\t') {
      char dev[64] = {};
      if (std::sscanf(line.c_str(), "%d %63[^ :]", &ifindex, dev) == 2) name = dev;
      continue;
    }
    unsigned int word = 0;
    if (std::sscanf(line.c_str(), " %x", &word) != 1 || name.empty()) continue;
    Candidate c{ifindex, name, {}};
    auto& sin = reinterpret_cast<sockaddr_in&>(c.group);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = word;
    out.push_back(c);
  }
  return out;
}

// /proc/PID/net/igmp6: "4    eth0            ff020000000000000000000000000001     1 0000000C 0".
std::vector<Candidate> ipv6_candidates(pid_t pid) {
  std::vector<Candidate> out;
  std::istringstream in(read_file(fmt::format("/proc/{}/net/igmp6", pid)));
  std::string line;
  while (std::getline(in, line)) {
    int ifindex = 0;
    char dev[64] = {}, hex[33] = {};
    if (std::sscanf(line.c_str(), "%d %63s %32s", &ifindex, dev, hex) != 3 || std::strlen(hex) != 32) continue;
    Candidate c{ifindex, dev, {}};
    auto& sin6 = reinterpret_cast<sockaddr_in6&>(c.group);
    sin6.sin6_family = AF_INET6;
    for (int i = 0; i < 16; ++i) {
      unsigned int byte = 0;
      std::sscanf(hex + 2 * i, "%2x", &byte);
      sin6.sin6_addr.s6_addr[i] = static_cast<uint8_t>(byte);
    }
    out.push_back(c);
  }
  return out;
}

std::string address_bytes(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(ss).sin_addr;
    return std::string(reinterpret_cast<const char*>(&a), sizeof a);
  }
  const auto& a = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
  return std::string(reinterpret_cast<const char*>(&a), sizeof a);
}

}  // namespace

void read_multicast_memberships(int s, int family, pid_t pid, int fd,
                                google::protobuf::RepeatedPtrField<pb::MulticastMembership>& out) {
  std::vector<Candidate> candidates = ipv4_candidates(pid);
  if (family == AF_INET6) {
    auto v6 = ipv6_candidates(pid);
    candidates.insert(candidates.end(), v6.begin(), v6.end());
  }
  constexpr uint32_t kMostSources = 256;
  std::vector<std::byte> buffer(offsetof(group_filter, gf_slist) + kMostSources * sizeof(sockaddr_storage));
  for (const Candidate& c : candidates) {
    auto* gf = reinterpret_cast<group_filter*>(buffer.data());
    std::memset(gf, 0, buffer.size());
    gf->gf_interface = static_cast<uint32_t>(c.ifindex);
    gf->gf_group = c.group;
    gf->gf_numsrc = kMostSources;
    socklen_t len = static_cast<socklen_t>(buffer.size());
    const int level = c.group.ss_family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
    const std::string what = fmt::format("multicast group {} on {}", launcher::ip_address_text(c.group), c.interface);
    if (::getsockopt(s, level, MCAST_MSFILTER, gf, &len) < 0) {
      if (errno == EADDRNOTAVAIL) continue;  // not a member
      fail_errno(errno, "pid {} fd {}: getsockopt MCAST_MSFILTER for {}", pid, fd, what);
    }
    if (gf->gf_numsrc > kMostSources)
      throw UnsupportedError(fmt::format("pid {} fd {}: {} filters {} sources: more than the {} supported", pid, fd,
                                         what, gf->gf_numsrc, kMostSources));
    pb::MulticastMembership* m = out.Add();
    m->set_interface(c.interface);
    m->set_group(address_bytes(c.group));
    m->set_include(gf->gf_fmode == MCAST_INCLUDE);
    for (uint32_t i = 0; i < gf->gf_numsrc; ++i) m->add_sources(address_bytes(gf->gf_slist[i]));
    log::debug("pid {} fd {}: member of {} ({} mode, {} source(s))", pid, fd, what,
               m->include() ? "include" : "exclude", gf->gf_numsrc);
  }
}

}  // namespace stasis::dump
