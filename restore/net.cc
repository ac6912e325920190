#include "restore/net.h"

#include <fcntl.h>
#include <net/if.h>
#include <sys/stat.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>

#include <netlink/route/link/veth.h>
#include <netlink/route/neighbour.h>

#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/netlink.h"
#include "common/ns_thread.h"
#include "images/image_file.h"

namespace stasis::restore {

namespace fs = std::filesystem;

namespace {

// The link flags a job sets (ip link set ... up/arp/promisc/allmulticast/multicast).
constexpr unsigned kRestoredFlags = IFF_UP | IFF_NOARP | IFF_PROMISC | IFF_ALLMULTI | IFF_MULTICAST;

// A link's own sysctl (conf/DEV/..., neigh/DEV/...): written once its link exists.
bool is_link_sysctl(const std::string& name) {
  std::vector<std::string> parts;
  for (const auto& p : fs::path(name)) parts.push_back(p.string());
  return parts.size() == 4 && (parts[1] == "conf" || parts[1] == "neigh") && parts[2] != "all" &&
         parts[2] != "default";
}

void write_sysctls(const pb::NetState& net, bool link_own) {
  for (const auto& s : net.sysctls()) {
    if (is_link_sysctl(s.name()) != link_own) continue;
    const fs::path path = fs::path("/proc/sys/net") / s.name();
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) fail_errno(errno, "sysctl net.{}: open {}", s.name(), path.string());
    const std::string value = s.value() + "\n";
    if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
      fail_errno(errno, "sysctl net.{}: write \"{}\"", s.name(), s.value());
  }
}

netlink::Link get_link(nl_sock* sock, const std::string& name) {
  rtnl_link* link = nullptr;
  int err = rtnl_link_get_kernel(sock, 0, name.c_str(), &link);
  if (err < 0) fail("link {}: not in the restored network namespace: {}", name, nl_geterror(err));
  return netlink::Link(link);
}

netlink::Addr mac_addr(const std::string& mac) {
  netlink::Addr a(nl_addr_build(AF_LLC, mac.data(), mac.size()));
  if (!a) fail("netlink: out of memory");
  return a;
}

// The attributes of a new link (or of its veth peer) as dumped.
void describe_new(rtnl_link* link, const pb::NetLink& l) {
  rtnl_link_set_name(link, l.name().c_str());
  rtnl_link_set_ifindex(link, static_cast<int>(l.ifindex()));
  if (l.mtu()) rtnl_link_set_mtu(link, l.mtu());
  if (l.txqlen()) rtnl_link_set_txqlen(link, l.txqlen());
  if (!l.mac().empty()) rtnl_link_set_addr(link, mac_addr(l.mac()).get());
}

void create_link(nl_sock* sock, const pb::NetLink& l, const pb::NetLink* peer) {
  int err = 0;
  if (l.kind() == "veth") {
    if (!peer) fail("veth {}: its peer {} is not in the image", l.name(), l.peer());
    rtnl_link* veth = rtnl_link_veth_alloc();
    if (!veth) fail("netlink: out of memory");
    describe_new(veth, l);
    describe_new(rtnl_link_veth_get_peer(veth), *peer);
    err = rtnl_link_add(sock, veth, NLM_F_CREATE | NLM_F_EXCL);
    rtnl_link_veth_release(veth);
  } else if (l.kind() == "dummy") {
    netlink::Link link(rtnl_link_alloc());
    describe_new(link.get(), l);
    err = rtnl_link_set_type(link.get(), "dummy");
    if (err >= 0) err = rtnl_link_add(sock, link.get(), NLM_F_CREATE | NLM_F_EXCL);
  } else {
    fail("link {}: restore cannot make a link of kind {}", l.name(), l.kind());
  }
  if (err < 0)
    fail("link {} ({}, index {}{}): cannot create it: {}", l.name(), l.kind(), l.ifindex(),
         peer ? fmt::format(", peer {}", peer->name()) : "", nl_geterror(err));
}

// MTU, MAC and flags of a link that exists (loopback, the launcher's veth, or one made here).
void apply_link(nl_sock* sock, const pb::NetLink& l) {
  netlink::Link link = get_link(sock, l.name());
  netlink::Link change(rtnl_link_alloc());
  bool changed = false;
  if (l.mtu() && rtnl_link_get_mtu(link.get()) != l.mtu()) {
    rtnl_link_set_mtu(change.get(), l.mtu());
    changed = true;
  }
  if (l.txqlen() && rtnl_link_get_txqlen(link.get()) != l.txqlen()) {
    rtnl_link_set_txqlen(change.get(), l.txqlen());
    changed = true;
  }
  if (!l.mac().empty()) {
    nl_addr* now = rtnl_link_get_addr(link.get());
    if (!now || nl_addr_get_len(now) != l.mac().size() ||
        std::string(static_cast<const char*>(nl_addr_get_binary_addr(now)), nl_addr_get_len(now)) != l.mac()) {
      rtnl_link_set_addr(change.get(), mac_addr(l.mac()).get());
      changed = true;
    }
  }
  const unsigned now_flags = rtnl_link_get_flags(link.get()) & kRestoredFlags;
  const unsigned want = l.flags() & kRestoredFlags;
  if (now_flags != want) {
    if (want) rtnl_link_set_flags(change.get(), want);
    if (now_flags & ~want) rtnl_link_unset_flags(change.get(), now_flags & ~want);
    changed = true;
  }
  if (!changed) return;
  int err = rtnl_link_change(sock, link.get(), change.get(), 0);
  if (err < 0) fail("link {}: set its MTU {}, MAC and flags {:#x}: {}", l.name(), l.mtu(), want, nl_geterror(err));
}

void restore_links(nl_sock* sock, const pb::NetState& net) {
  std::set<std::string> made;
  for (const auto& l : net.links()) {
    if (l.kind() == "loopback" || l.launcher() || made.count(l.name())) continue;
    const pb::NetLink* peer = nullptr;
    if (l.kind() == "veth") {
      for (const auto& p : net.links())
        if (p.name() == l.peer()) peer = &p;
    }
    create_link(sock, l, peer);
    made.insert(l.name());
    if (peer) made.insert(peer->name());
  }
  for (const auto& l : net.links()) apply_link(sock, l);
}

std::string address_text(const pb::NetAddress& a) {
  return fmt::format("{}/{} on {}", a.local(), a.prefixlen(), a.link());
}

int ifindex_of(nl_sock* sock, const std::string& name) {
  return rtnl_link_get_ifindex(get_link(sock, name).get());
}

void restore_addresses(nl_sock* sock, const pb::NetState& net) {
  // What is there already: loopback's and the launcher's, the kernel's IPv6 link-local ones.
  nl_cache* raw = nullptr;
  int err = rtnl_addr_alloc_cache(sock, &raw);
  if (err < 0) fail("netlink: list addresses: {}", nl_geterror(err));
  netlink::Cache cache(raw);
  std::set<std::string> dumped;
  for (const auto& a : net.addresses()) dumped.insert(address_text(a));
  const std::string* launcher_link = nullptr;
  bool launcher_mac_restored = false;  // not on a bridge, where the launcher derives it
  for (const auto& l : net.links()) {
    if (!l.launcher()) continue;
    launcher_link = &l.name();
    launcher_mac_restored = !l.mac().empty();
  }
  bool has_launcher_address = false;
  for (const auto& a : net.addresses()) has_launcher_address |= a.launcher();
  std::set<std::string> present;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj);
    char name[IF_NAMESIZE] = "";
    if (!::if_indextoname(static_cast<unsigned>(rtnl_addr_get_ifindex(addr)), name)) continue;
    const std::string text = fmt::format("{}/{} on {}", netlink::ip_text(rtnl_addr_get_local(addr)),
                                         rtnl_addr_get_prefixlen(addr), name);
    const bool on_launcher_link = launcher_link && *launcher_link == name;
    // On the launcher's veth: the kernel's link-local address for the MAC the link was made
    // with (the job had the one of its own MAC, put back below), and the launcher's address if
    // the job had removed it.
    const bool stale_link_local = rtnl_addr_get_family(addr) == AF_INET6 &&
                                  rtnl_addr_get_scope(addr) == RT_SCOPE_LINK && launcher_mac_restored;
    const bool dropped_launcher_address = rtnl_addr_get_family(addr) == AF_INET && !has_launcher_address;
    if (on_launcher_link && !dumped.count(text) && (stale_link_local || dropped_launcher_address)) {
      err = rtnl_addr_delete(sock, addr, 0);
      if (err < 0 && err != -NLE_NOADDR) fail("address {}: remove it: {}", text, nl_geterror(err));
      continue;
    }
    present.insert(text);
  }
  for (const auto& a : net.addresses()) {
    if (a.launcher() || present.count(address_text(a))) continue;
    const int family = static_cast<int>(a.family());
    netlink::RtAddr addr(rtnl_addr_alloc());
    rtnl_addr_set_ifindex(addr.get(), ifindex_of(sock, a.link()));
    rtnl_addr_set_family(addr.get(), family);
    netlink::Addr local = netlink::parse_ip(a.local(), family, static_cast<int>(a.prefixlen()));
    err = rtnl_addr_set_local(addr.get(), local.get());
    if (err >= 0 && !a.peer().empty())
      err = rtnl_addr_set_peer(addr.get(), netlink::parse_ip(a.peer(), family, static_cast<int>(a.prefixlen())).get());
    if (err >= 0 && !a.broadcast().empty())
      err = rtnl_addr_set_broadcast(addr.get(), netlink::parse_ip(a.broadcast(), family).get());
    if (err >= 0 && !a.label().empty()) err = rtnl_addr_set_label(addr.get(), a.label().c_str());
    if (err < 0) fail("address {}: {}", address_text(a), nl_geterror(err));
    rtnl_addr_set_prefixlen(addr.get(), static_cast<int>(a.prefixlen()));
    rtnl_addr_set_scope(addr.get(), static_cast<int>(a.scope()));
    // Flags a job chooses; the others (tentative, secondary, permanent...) are the kernel's.
    unsigned flags = a.flags() & (IFA_F_NODAD | IFA_F_NOPREFIXROUTE | IFA_F_HOMEADDRESS | IFA_F_MANAGETEMPADDR);
    if (family == AF_INET6) flags |= IFA_F_NODAD;  // it was in use: no second detection
    rtnl_addr_set_flags(addr.get(), flags);
    if (a.valid_lft() != 0xffffffffu || a.preferred_lft() != 0xffffffffu) {
      rtnl_addr_set_valid_lifetime(addr.get(), a.valid_lft());
      rtnl_addr_set_preferred_lifetime(addr.get(), a.preferred_lft());
    }
    err = rtnl_addr_add(sock, addr.get(), NLM_F_EXCL);
    // The kernel makes the link-local address of a link made here as it comes up, from the
    // MAC given to it: the same address, maybe in the meantime.
    if (err == -NLE_EXIST && family == AF_INET6 && a.scope() == RT_SCOPE_LINK) continue;
    if (err < 0) fail("address {}: cannot add it: {}", address_text(a), nl_geterror(err));
  }
}

void restore_neighbours(nl_sock* sock, const pb::NetState& net) {
  for (const auto& n : net.neighbours()) {
    const int family = static_cast<int>(n.family());
    std::unique_ptr<rtnl_neigh, void (*)(rtnl_neigh*)> neigh(rtnl_neigh_alloc(), rtnl_neigh_put);
    if (!neigh) fail("netlink: out of memory");
    rtnl_neigh_set_ifindex(neigh.get(), ifindex_of(sock, n.link()));
    rtnl_neigh_set_family(neigh.get(), family);
    int err = rtnl_neigh_set_dst(neigh.get(), netlink::parse_ip(n.dst(), family).get());
    if (err >= 0) {
      rtnl_neigh_set_lladdr(neigh.get(), mac_addr(n.lladdr()).get());
      rtnl_neigh_set_state(neigh.get(), NUD_PERMANENT);
      err = rtnl_neigh_add(sock, neigh.get(), NLM_F_CREATE | NLM_F_EXCL);
    }
    if (err < 0) fail("neighbour {} on {}: cannot add it: {}", n.dst(), n.link(), nl_geterror(err));
  }
}

std::string route_text(const pb::NetRoute& r) {
  std::string text = r.dst().empty() ? "default" : fmt::format("{}/{}", r.dst(), r.dst_len());
  for (const auto& nh : r.nexthops()) {
    if (!nh.gateway().empty()) text += " via " + nh.gateway();
    if (!nh.link().empty()) text += " dev " + nh.link();
  }
  if (r.family() == AF_INET6) text = "IPv6 " + text;
  return text;
}

int add_route(nl_sock* sock, const pb::NetRoute& r) {
  const int family = static_cast<int>(r.family());
  netlink::Route route(rtnl_route_alloc());
  rtnl_route_set_family(route.get(), static_cast<uint8_t>(family));
  rtnl_route_set_table(route.get(), r.table());
  rtnl_route_set_protocol(route.get(), static_cast<uint8_t>(r.protocol()));
  rtnl_route_set_scope(route.get(), static_cast<uint8_t>(r.scope()));
  rtnl_route_set_type(route.get(), static_cast<uint8_t>(r.type()));
  rtnl_route_set_priority(route.get(), r.priority());
  netlink::Addr dst = r.dst().empty() ? netlink::parse_ip(family == AF_INET ? "0.0.0.0" : "::", family, 0)
                                      : netlink::parse_ip(r.dst(), family, static_cast<int>(r.dst_len()));
  int err = rtnl_route_set_dst(route.get(), dst.get());
  if (err < 0) return err;
  if (!r.pref_src().empty()) {
    err = rtnl_route_set_pref_src(route.get(), netlink::parse_ip(r.pref_src(), family).get());
    if (err < 0) return err;
  }
  if (r.mtu()) rtnl_route_set_metric(route.get(), RTAX_MTU, r.mtu());
  for (const auto& n : r.nexthops()) {
    rtnl_nexthop* nh = rtnl_route_nh_alloc();  // owned by the route once added
    if (!n.gateway().empty()) rtnl_route_nh_set_gateway(nh, netlink::parse_ip(n.gateway(), family).get());
    if (!n.link().empty()) rtnl_route_nh_set_ifindex(nh, ifindex_of(sock, n.link()));
    if (n.weight()) rtnl_route_nh_set_weight(nh, static_cast<uint8_t>(n.weight()));
    rtnl_route_nh_set_flags(nh, n.flags() & RTNH_F_ONLINK);
    rtnl_route_add_nexthop(route.get(), nh);
  }
  return rtnl_route_add(sock, route.get(), NLM_F_EXCL);
}

// The job had removed the default route the launcher gives its veth, which the launcher has
// made again: remove it again.
void drop_launcher_route(nl_sock* sock, const pb::NetState& net) {
  const pb::NetLink* launcher_link = nullptr;
  for (const auto& l : net.links())
    if (l.launcher()) launcher_link = &l;
  if (!launcher_link) return;
  for (const auto& r : net.routes())
    if (r.launcher()) return;
  nl_cache* raw = nullptr;
  int err = rtnl_route_alloc_cache(sock, AF_INET, 0, &raw);
  if (err < 0) fail("netlink: list routes: {}", nl_geterror(err));
  netlink::Cache cache(raw);
  const int ifindex = ifindex_of(sock, launcher_link->name());
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* route = reinterpret_cast<rtnl_route*>(obj);
    nl_addr* dst = rtnl_route_get_dst(route);
    if (rtnl_route_get_table(route) != RT_TABLE_MAIN || (dst && nl_addr_get_prefixlen(dst) != 0) ||
        rtnl_route_get_nnexthops(route) != 1 || rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(route, 0)) != ifindex)
      continue;
    err = rtnl_route_delete(sock, route, 0);
    if (err < 0) fail("default route dev {}: remove it: {}", launcher_link->name(), nl_geterror(err));
  }
}

void restore_routes(nl_sock* sock, const pb::NetState& net) {
  drop_launcher_route(sock, net);
  // A route through a gateway needs the route to that gateway first: those that fail for want
  // of one are tried again while others go in.
  std::vector<const pb::NetRoute*> pending;
  for (const auto& r : net.routes())
    if (!r.launcher()) pending.push_back(&r);
  while (!pending.empty()) {
    std::vector<const pb::NetRoute*> failed;
    std::string first_error;
    for (const pb::NetRoute* r : pending) {
      int err = add_route(sock, *r);
      if (err >= 0) continue;
      failed.push_back(r);
      if (first_error.empty()) first_error = fmt::format("route {}: cannot add it: {}", route_text(*r), nl_geterror(err));
    }
    if (failed.size() == pending.size()) fail("{}", first_error);
    pending = std::move(failed);
  }
}

}  // namespace

std::optional<pb::NetState> load_net(const images::Checkpoint& checkpoint) {
  using images::ImageType;
  if (!checkpoint.exists(ImageType::Net)) return std::nullopt;
  pb::NetState net;
  images::read_single(checkpoint.path(ImageType::Net), ImageType::Net, net);
  return net;
}

void restore_net(pid_t pid, const pb::NetState& net) {
  const auto started = std::chrono::steady_clock::now();
  // The contents of the job's own namespace go into the container's, never into ours.
  struct stat job {}, self {};
  const std::string job_path = fmt::format("/proc/{}/ns/net", pid);
  check_sys(::stat(job_path.c_str(), &job), "stat {}", job_path);
  check_sys(::stat("/proc/self/ns/net", &self), "stat /proc/self/ns/net");
  if (job.st_ino == self.st_ino && job.st_dev == self.st_dev)
    fail("pid {}: the job had a network namespace of its own when dumped, but the restored container shares the "
         "host's (its configuration says --net host)",
         pid);
  with_context(fmt::format("restore the network namespace of pid {}", pid), [&] {
    run_in_namespaces(pid, {"net"}, [&] {
      netlink::Sock sock = netlink::connect_route();
      write_sysctls(net, /*link_own=*/false);
      restore_links(sock.get(), net);
      write_sysctls(net, /*link_own=*/true);
      restore_addresses(sock.get(), net);
      restore_neighbours(sock.get(), net);
      restore_routes(sock.get(), net);
    });
  });
  log::debug("pid {}: {} link(s), {} address(es), {} route(s), {} neighbour(s), {} sysctl(s) put back in its network "
             "namespace in {:.1f} ms",
             pid, net.links_size(), net.addresses_size(), net.routes_size(), net.neighbours_size(), net.sysctls_size(),
             std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
}

}  // namespace stasis::restore
