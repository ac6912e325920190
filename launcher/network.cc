#include "launcher/network.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <sys/random.h>

#include <algorithm>
#include <cstring>

#include <memory>

#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>

#include "common/error.h"
#include "common/netlink.h"

namespace stasis::launcher::net {

namespace {

using netlink::Addr;
using netlink::CacheDeleter;
using netlink::Link;
using netlink::RouteDeleter;
using netlink::RtAddrDeleter;
using netlink::Sock;

Sock connect() { return netlink::connect_route(); }

Link get_link(nl_sock* sock, const std::string& ifname) {
  rtnl_link* link = nullptr;
  int err = rtnl_link_get_kernel(sock, 0, ifname.c_str(), &link);
  if (err < 0) fail("netlink: link {}: {}", ifname, nl_geterror(err));
  return Link(link);
}

Addr parse_addr(const std::string& text) {
  nl_addr* addr = nullptr;
  int err = nl_addr_parse(text.c_str(), AF_INET, &addr);
  if (err < 0) fail("netlink: address {}: {}", text, nl_geterror(err));
  return Addr(addr);
}

}  // namespace

void set_link_up(const std::string& ifname) {
  Sock sock = connect();
  Link link = get_link(sock.get(), ifname);
  Link change(rtnl_link_alloc());
  rtnl_link_set_flags(change.get(), IFF_UP);
  int err = rtnl_link_change(sock.get(), link.get(), change.get(), 0);
  if (err < 0) fail("netlink: set link {} up: {}", ifname, nl_geterror(err));
}

void set_loopback_up() {
  Sock sock = connect();
  // lo is interface 1 in every network namespace (LOOPBACK_IFINDEX): no need to look it up.
  Link lo(rtnl_link_alloc());
  rtnl_link_set_ifindex(lo.get(), 1);
  Link change(rtnl_link_alloc());
  rtnl_link_set_flags(change.get(), IFF_UP);
  int err = rtnl_link_change(sock.get(), lo.get(), change.get(), 0);
  if (err < 0) fail("netlink: set lo (interface 1) up: {}", nl_geterror(err));
}

void create_veth(const std::string& host_ifname, const std::string& peer_ifname, pid_t peer_pid) {
  Sock sock = connect();
  int err = rtnl_link_veth_add(sock.get(), host_ifname.c_str(), peer_ifname.c_str(), peer_pid);
  if (err < 0) {
    fail("netlink: create veth pair {} <-> {} (in the netns of pid {}): {}", host_ifname, peer_ifname, peer_pid,
         nl_geterror(err));
  }
}

void create_bridge(const std::string& ifname) {
  Sock sock = connect();
  Link link(rtnl_link_alloc());
  rtnl_link_set_name(link.get(), ifname.c_str());
  int err = rtnl_link_set_type(link.get(), "bridge");
  if (err < 0) fail("netlink: create bridge {}: {}", ifname, nl_geterror(err));
  // A MAC address of its own (random, locally administered): otherwise the bridge takes the
  // lowest of its ports' and changes it as containers come and go, and the others' cached
  // neighbour entry for their gateway goes stale (their traffic out is lost for a while).
  unsigned char mac[6];
  if (::getrandom(mac, sizeof mac, 0) != static_cast<ssize_t>(sizeof mac)) fail_errno(errno, "getrandom");
  mac[0] = static_cast<unsigned char>((mac[0] & 0xfe) | 0x02);
  Addr lladdr(nl_addr_build(AF_LLC, mac, sizeof mac));
  if (!lladdr) fail("netlink: out of memory");
  rtnl_link_set_addr(link.get(), lladdr.get());
  err = rtnl_link_add(sock.get(), link.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err < 0) fail("netlink: create bridge {}: {}", ifname, nl_geterror(err));
}

void set_master(const std::string& ifname, const std::string& master) {
  Sock sock = connect();
  Link link = get_link(sock.get(), ifname);
  Link bridge = get_link(sock.get(), master);
  Link change(rtnl_link_alloc());
  rtnl_link_set_master(change.get(), rtnl_link_get_ifindex(bridge.get()));
  int err = rtnl_link_change(sock.get(), link.get(), change.get(), 0);
  if (err < 0) fail("netlink: attach {} to bridge {}: {}", ifname, master, nl_geterror(err));
}

void set_mac(const std::string& ifname, const unsigned char (&mac)[6]) {
  Sock sock = connect();
  Link link = get_link(sock.get(), ifname);
  Link change(rtnl_link_alloc());
  Addr lladdr(nl_addr_build(AF_LLC, mac, sizeof mac));
  if (!lladdr) fail("netlink: out of memory");
  rtnl_link_set_addr(change.get(), lladdr.get());
  int err = rtnl_link_change(sock.get(), link.get(), change.get(), 0);
  if (err < 0) fail("netlink: set the MAC address of {}: {}", ifname, nl_geterror(err));
}

void add_address(const std::string& ifname, const std::string& cidr) {
  Sock sock = connect();
  Link link = get_link(sock.get(), ifname);
  Addr local = parse_addr(cidr);
  std::unique_ptr<rtnl_addr, RtAddrDeleter> addr(rtnl_addr_alloc());
  rtnl_addr_set_ifindex(addr.get(), rtnl_link_get_ifindex(link.get()));
  rtnl_addr_set_family(addr.get(), AF_INET);
  int err = rtnl_addr_set_local(addr.get(), local.get());
  if (err >= 0) {
    rtnl_addr_set_prefixlen(addr.get(), static_cast<int>(nl_addr_get_prefixlen(local.get())));
    err = rtnl_addr_add(sock.get(), addr.get(), 0);
  }
  if (err < 0) fail("netlink: add address {} to {}: {}", cidr, ifname, nl_geterror(err));
}

void add_default_route(const std::string& ifname, const std::string& gateway) {
  Sock sock = connect();
  Link link = get_link(sock.get(), ifname);
  Addr dst = parse_addr("0.0.0.0/0");
  Addr gw = parse_addr(gateway);
  std::unique_ptr<rtnl_route, RouteDeleter> route(rtnl_route_alloc());
  rtnl_route_set_family(route.get(), AF_INET);
  rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
  rtnl_route_set_protocol(route.get(), RTPROT_BOOT);
  rtnl_route_set_scope(route.get(), RT_SCOPE_UNIVERSE);
  rtnl_route_set_type(route.get(), RTN_UNICAST);
  int err = rtnl_route_set_dst(route.get(), dst.get());
  if (err >= 0) {
    rtnl_nexthop* nh = rtnl_route_nh_alloc();  // owned by the route once added
    rtnl_route_nh_set_gateway(nh, gw.get());
    rtnl_route_nh_set_ifindex(nh, rtnl_link_get_ifindex(link.get()));
    rtnl_route_add_nexthop(route.get(), nh);
    err = rtnl_route_add(sock.get(), route.get(), NLM_F_CREATE);
  }
  if (err < 0) fail("netlink: add default route via {} dev {}: {}", gateway, ifname, nl_geterror(err));
}

bool link_exists(const std::string& ifname) {
  Sock sock = connect();
  rtnl_link* link = nullptr;
  int err = rtnl_link_get_kernel(sock.get(), 0, ifname.c_str(), &link);
  if (err >= 0) rtnl_link_put(link);
  return err >= 0;
}

bool delete_link(const std::string& ifname) {
  Sock sock = connect();
  Link link(rtnl_link_alloc());
  rtnl_link_set_name(link.get(), ifname.c_str());
  int err = rtnl_link_delete(sock.get(), link.get());
  if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND) return false;
  if (err < 0) fail("netlink: delete link {}: {}", ifname, nl_geterror(err));
  return true;
}

std::string link_in_subnet(const std::string& cidr) {
  Addr wanted = parse_addr(cidr);
  auto ipv4 = [](nl_addr* a) {
    uint32_t v = 0;
    std::memcpy(&v, nl_addr_get_binary_addr(a), sizeof v);
    return ntohl(v);
  };
  const uint32_t want = ipv4(wanted.get());
  const unsigned want_prefix = nl_addr_get_prefixlen(wanted.get());
  Sock sock = connect();
  nl_cache* raw = nullptr;
  int err = rtnl_addr_alloc_cache(sock.get(), &raw);
  if (err < 0) fail("netlink: list addresses: {}", nl_geterror(err));
  std::unique_ptr<nl_cache, CacheDeleter> cache(raw);
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj);
    nl_addr* local = rtnl_addr_get_local(addr);
    if (rtnl_addr_get_family(addr) != AF_INET || !local || nl_addr_get_len(local) != 4) continue;
    // Two subnets overlap when they agree on the shorter of their prefixes.
    const unsigned prefix = std::min(want_prefix, static_cast<unsigned>(rtnl_addr_get_prefixlen(addr)));
    const uint32_t mask = prefix == 0 ? 0 : ~((1u << (32 - prefix)) - 1);
    if ((ipv4(local) & mask) != (want & mask)) continue;
    char name[IF_NAMESIZE] = "?";
    ::if_indextoname(static_cast<unsigned>(rtnl_addr_get_ifindex(addr)), name);
    char text[64];
    return fmt::format("{} ({})", name, nl_addr2str(local, text, sizeof text));
  }
  return "";
}

std::vector<std::string> link_names() {
  Sock sock = connect();
  nl_cache* raw = nullptr;
  int err = rtnl_link_alloc_cache(sock.get(), AF_UNSPEC, &raw);
  if (err < 0) fail("netlink: list links: {}", nl_geterror(err));
  std::unique_ptr<nl_cache, CacheDeleter> cache(raw);
  std::vector<std::string> out;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    out.emplace_back(rtnl_link_get_name(reinterpret_cast<rtnl_link*>(obj)));
  }
  return out;
}

}  // namespace stasis::launcher::net
