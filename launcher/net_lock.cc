#include "launcher/net_lock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "common/error.h"
#include "common/log.h"
#include "launcher/nat.h"

namespace stasis::launcher {

namespace {

struct Endpoint {
  bool v4 = true;
  std::string address;
  uint16_t port = 0;
};

Endpoint endpoint_of(const sockaddr_storage& ss) {
  Endpoint e;
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(ss);
    ::inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
    e.port = ntohs(in.sin_port);
  } else {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
    e.port = ntohs(in6.sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
      ::inet_ntop(AF_INET, &in6.sin6_addr.s6_addr[12], text, sizeof text);
    } else {
      e.v4 = false;
      ::inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
    }
  }
  e.address = text;
  return e;
}

}  // namespace

std::string ip_address_text(const sockaddr_storage& ss) { return endpoint_of(ss).address; }

std::string socket_address_text(const std::string& bytes) {
  if (bytes.empty()) return "*";
  sockaddr_storage ss{};
  std::memcpy(&ss, bytes.data(), std::min(bytes.size(), sizeof ss));
  const Endpoint e = endpoint_of(ss);
  // A v4-mapped IPv6 address reads as the IPv4 one it stands for.
  return e.v4 ? fmt::format("{}:{}", e.address, e.port) : fmt::format("[{}]:{}", e.address, e.port);
}

LockedConnection locked_connection(std::string_view local, std::string_view peer) {
  LockedConnection c{};
  std::memcpy(&c.local, local.data(), std::min(local.size(), sizeof c.local));
  std::memcpy(&c.peer, peer.data(), std::min(peer.size(), sizeof c.peer));
  return c;
}

void lock_connections(const std::string& table, bool create, const std::vector<LockedConnection>& connections,
                      int netns_fd) {
  std::string commands;
  if (create) {
    // Before conntrack and every other hook (priority -400 < raw's -300): nothing of the
    // connections passes, in either direction, but what the restore makes up (its mark).
    commands += fmt::format(
        "table inet {t} {{\n"
        "  set v4 {{ type ipv4_addr . inet_service . ipv4_addr . inet_service; }}\n"
        "  set v6 {{ type ipv6_addr . inet_service . ipv6_addr . inet_service; }}\n"
        "  chain input {{ type filter hook input priority -400; policy accept;\n"
        "    meta mark {m:#x} accept;\n"
        "    ip saddr . tcp sport . ip daddr . tcp dport @v4 drop;\n"
        "    ip6 saddr . tcp sport . ip6 daddr . tcp dport @v6 drop; }}\n"
        "  chain output {{ type filter hook output priority -400; policy accept;\n"
        "    meta mark {m:#x} accept;\n"
        "    ip saddr . tcp sport . ip daddr . tcp dport @v4 drop;\n"
        "    ip6 saddr . tcp sport . ip6 daddr . tcp dport @v6 drop; }}\n"
        "}}\n",
        fmt::arg("t", table), fmt::arg("m", kNetLockPassMark));
  }
  std::string v4, v6;
  for (const auto& c : connections) {
    const Endpoint local = endpoint_of(c.local), peer = endpoint_of(c.peer);
    std::string& set = local.v4 ? v4 : v6;
    // Both directions: what we send (output) and what the peer sends (input).
    set += fmt::format("{}{} . {} . {} . {}, {} . {} . {} . {}", set.empty() ? "" : ", ", local.address, local.port,
                       peer.address, peer.port, peer.address, peer.port, local.address, local.port);
  }
  if (!v4.empty()) commands += fmt::format("add element inet {} v4 {{ {} }}\n", table, v4);
  if (!v6.empty()) commands += fmt::format("add element inet {} v6 {{ {} }}\n", table, v6);
  nat::run_batch(commands, false, netns_fd);
}

void remove_lock(const std::string& table, int netns_fd) {
  // "add" first: no error when the table is not there.
  nat::run_batch(fmt::format("add table inet {t}\ndelete table inet {t}\n", fmt::arg("t", table)), false, netns_fd);
}

void NetLock::lock(pid_t pid, const std::vector<Connection>& connections) {
  if (connections.empty()) return;
  if (!made_) {
    const std::string path = fmt::format("/proc/{}/ns/net", pid);
    if (!netns_) netns_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!netns_) fail_errno(errno, "network lock: open {}", path);
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    table_ = fmt::format("{}{}_{}", kNetLockTablePrefix, pid, std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
  }
  const auto start = std::chrono::steady_clock::now();
  lock_connections(table_, !made_, connections, netns_.get());
  made_ = true;  // one batch: the table is there with its elements, or nothing is
  log::debug("network lock {}: {} connection(s) of pid {} held, in {:.1f} ms", table_, connections.size(), pid,
             std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
}

NetLock::~NetLock() {
  if (!made_ || kept_) return;
  try {
    remove_lock(table_, netns_.get());
  } catch (const std::exception& e) {
    log::error("could not remove the network lock (nftables table inet {}): {}; remove it with "
               "`nft delete table inet {}` in the job's network namespace",
               table_, e.what(), table_);
  }
}

}  // namespace stasis::launcher
