// Owning handles for libnl-route-3 objects, and the few conversions between them and text
// that dump/net.cc and restore/net.cc share. A socket talks to the network namespace of the
// thread that connected it (common/ns_thread.h runs code in another's).
#pragma once

#include <arpa/inet.h>
#include <sys/socket.h>

#include <memory>
#include <string>

#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>

#include "common/error.h"

namespace stasis::netlink {

struct SockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
struct AddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
struct RtAddrDeleter {
  void operator()(rtnl_addr* a) const { rtnl_addr_put(a); }
};
struct RouteDeleter {
  void operator()(rtnl_route* r) const { rtnl_route_put(r); }
};
struct CacheDeleter {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
using Sock = std::unique_ptr<nl_sock, SockDeleter>;
using Link = std::unique_ptr<rtnl_link, LinkDeleter>;
using Addr = std::unique_ptr<nl_addr, AddrDeleter>;
using RtAddr = std::unique_ptr<rtnl_addr, RtAddrDeleter>;
using Route = std::unique_ptr<rtnl_route, RouteDeleter>;
using Cache = std::unique_ptr<nl_cache, CacheDeleter>;

// A NETLINK_ROUTE socket in the calling thread's network namespace.
inline Sock connect_route() {
  Sock sock(nl_socket_alloc());
  if (!sock) fail("netlink: out of memory");
  int err = nl_connect(sock.get(), NETLINK_ROUTE);
  if (err < 0) fail("netlink: connect NETLINK_ROUTE: {}", nl_geterror(err));
  return sock;
}

// "10.0.0.2", "fd00::2": the address alone, no prefix; "" for none or an empty one.
inline std::string ip_text(nl_addr* a) {
  if (!a || nl_addr_get_len(a) == 0) return "";
  const int family = nl_addr_get_family(a);
  if (family != AF_INET && family != AF_INET6) return "";
  char text[INET6_ADDRSTRLEN] = "";
  if (!::inet_ntop(family, nl_addr_get_binary_addr(a), text, sizeof text)) return "";
  return text;
}

// The reverse, with a prefix length (full length when prefixlen < 0).
inline Addr parse_ip(const std::string& text, int family, int prefixlen = -1) {
  unsigned char bytes[16] = {};
  if (::inet_pton(family, text.c_str(), bytes) != 1) fail("netlink: {} is not an IPv{} address", text, family == AF_INET ? 4 : 6);
  const unsigned len = family == AF_INET ? 4 : 16;
  Addr a(nl_addr_build(family, bytes, len));
  if (!a) fail("netlink: out of memory");
  nl_addr_set_prefixlen(a.get(), prefixlen < 0 ? static_cast<int>(len * 8) : prefixlen);
  return a;
}

}  // namespace stasis::netlink
