#include "dump/net.h"

#include <net/if_arp.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netlink/route/neighbour.h>
#include <netlink/route/rule.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <string_view>

#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/netlink.h"
#include "common/ns_thread.h"
#include "images/image_file.h"
#include "launcher/net_lock.h"

namespace stasis::dump {

namespace fs = std::filesystem;

namespace {

// The sysctl trees of a network namespace that we save (the others under /proc/sys/net belong
// to netfilter or to protocols whose state we do not restore).
constexpr const char* kSysctlTrees[] = {"core", "ipv4", "ipv6", "unix"};
const fs::path kSysctlRoot = "/proc/sys/net";

// Every readable and writable sysctl under the trees, name (relative to /proc/sys/net) ->
// value. Write-only ones (route/flush) and those that refuse to be read (an unset
// stable_secret) are left out: nothing to put back.
std::map<std::string, std::string> read_net_sysctls() {
  std::map<std::string, std::string> out;
  for (const char* tree : kSysctlTrees) {
    std::error_code ec;
    fs::recursive_directory_iterator it(kSysctlRoot / tree, ec), end;
    if (ec) continue;  // a tree this kernel lacks
    for (; it != end; it.increment(ec)) {
      if (ec) break;
      struct stat st {};
      if (::stat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      if ((st.st_mode & S_IRUSR) == 0 || (st.st_mode & S_IWUSR) == 0) continue;
      std::string value;
      try {
        value = read_file(it->path());
      } catch (const std::exception&) {
        continue;
      }
      while (!value.empty() && value.back() == '\n') value.pop_back();
      out[it->path().lexically_relative(kSysctlRoot).string()] = value;
    }
  }
  return out;
}

// "ipv4/conf/eth0/rp_filter" -> {"ipv4", "conf", "eth0", "rp_filter"}.
std::vector<std::string> split_path(const std::string& name) {
  std::vector<std::string> parts;
  for (const auto& p : fs::path(name)) parts.push_back(p.string());
  return parts;
}

// The sysctls of the job's namespace that restore must write: those that differ from what a
// fresh namespace has. A link's own entry (conf/DEV, neigh/DEV) is compared with what the link
// would get there: loopback's own, and the "default" entry (or loopback's, for neigh) for the
// others; it is kept too when the job changed the default, which restore writes first and
// which the kernel copies onto links that never set it.
std::vector<pb::NetSysctl> changed_sysctls(const std::map<std::string, std::string>& job,
                                           const std::map<std::string, std::string>& fresh) {
  std::vector<pb::NetSysctl> out;
  auto differs = [&](const std::string& name, const std::string& value) {
    auto f = fresh.find(name);
    return f != fresh.end() && f->second != value;
  };
  for (const auto& [name, value] : job) {
    std::vector<std::string> parts = split_path(name);
    bool keep = false;
    if (parts.size() == 4 && (parts[1] == "conf" || parts[1] == "neigh") && parts[2] != "all" &&
        parts[2] != "default") {
      const std::string& family = parts[0];
      const std::string& key = parts[3];
      // An IPv6 link's MTU follows the link's, which is restored with it.
      if (family == "ipv6" && parts[1] == "conf" && key == "mtu") continue;
      std::string reference = parts[2] == "lo" || parts[1] == "neigh" ? family + "/" + parts[1] + "/lo/" + key
                                                                      : family + "/conf/default/" + key;
      auto f = fresh.find(reference);
      keep = f != fresh.end() && f->second != value;
      const std::string job_default = family + "/" + parts[1] + "/default/" + key;
      if (auto d = job.find(job_default); d != job.end() && differs(job_default, d->second)) keep = true;
    } else {
      keep = differs(name, value);
    }
    if (!keep) continue;
    auto* s = &out.emplace_back();
    s->set_name(name);
    s->set_value(value);
  }
  return out;
}

bool has_launcher_veth(const pb::ContainerConfig* config) {
  return config && (config->net().mode() == "veth" || config->net().mode() == "bridge");
}

std::string strip_prefix(const std::string& cidr) { return cidr.substr(0, cidr.find('/')); }

std::string describe_kind(rtnl_link* link) {
  const char* type = rtnl_link_get_type(link);
  if (type) return type;
  char buf[64];
  return fmt::format("no kind: a device of type {}", nl_llproto2str(rtnl_link_get_arptype(link), buf, sizeof buf));
}

void collect_links(pid_t pid, nl_sock* sock, const pb::ContainerConfig* config, pb::NetState& out,
                   std::map<int, std::string>& names) {
  nl_cache* raw = nullptr;
  int err = rtnl_link_alloc_cache(sock, AF_UNSPEC, &raw);
  if (err < 0) fail("netlink: list links: {}", nl_geterror(err));
  netlink::Cache cache(raw);
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* link = reinterpret_cast<rtnl_link*>(obj);
    names[rtnl_link_get_ifindex(link)] = rtnl_link_get_name(link);
  }
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* link = reinterpret_cast<rtnl_link*>(obj);
    const std::string name = rtnl_link_get_name(link);
    const char* type = rtnl_link_get_type(link);
    pb::NetLink l;
    l.set_ifindex(static_cast<uint32_t>(rtnl_link_get_ifindex(link)));
    l.set_name(name);
    l.set_mtu(rtnl_link_get_mtu(link));
    l.set_flags(rtnl_link_get_flags(link));
    l.set_txqlen(rtnl_link_get_txqlen(link));
    auto refuse = [&](const std::string& why) {
      throw UnsupportedError(fmt::format(
          "pid {}: link {} ({}) in the job's network namespace: {}; stasis recreates loopback, the veth the launcher "
          "made, veth pairs with both ends inside and dummy links. Remove the link before the dump.",
          pid, name, describe_kind(link), why));
    };
    if (rtnl_link_get_arptype(link) == ARPHRD_LOOPBACK && !type) {
      l.set_kind("loopback");
    } else if (type && std::string_view(type) == "veth") {
      l.set_kind("veth");
      int32_t netnsid = -1;
      const bool peer_outside = rtnl_link_get_link_netnsid(link, &netnsid) == 0;
      if (peer_outside) {
        if (!has_launcher_veth(config) || name != config->net().container_ifname())
          refuse("its peer is in another network namespace and the launcher did not make it");
        l.set_launcher(true);
      } else {
        auto peer = names.find(rtnl_link_get_link(link));
        if (peer == names.end()) refuse("its peer cannot be found");
        l.set_peer(peer->second);
      }
    } else if (type && std::string_view(type) == "dummy") {
      l.set_kind("dummy");
    } else {
      refuse("a kind of link that restore cannot make");
    }
    if (rtnl_link_get_master(link) > 0) refuse("it is a port of another link");
    // On a bridge the launcher derives the MAC from the address (a copy restored at another
    // address must not take the original's): it sets it again itself.
    const bool launcher_mac = l.launcher() && config->net().mode() == "bridge";
    if (nl_addr* mac = rtnl_link_get_addr(link); mac && l.kind() != "loopback" && !launcher_mac)
      l.set_mac(std::string(static_cast<const char*>(nl_addr_get_binary_addr(mac)), nl_addr_get_len(mac)));
    *out.add_links() = std::move(l);
  }
}

void collect_addresses(nl_sock* sock, const pb::ContainerConfig* config, const std::map<int, std::string>& names,
                       pb::NetState& out) {
  nl_cache* raw = nullptr;
  int err = rtnl_addr_alloc_cache(sock, &raw);
  if (err < 0) fail("netlink: list addresses: {}", nl_geterror(err));
  netlink::Cache cache(raw);
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj);
    const int family = rtnl_addr_get_family(addr);
    if (family != AF_INET && family != AF_INET6) continue;
    auto link = names.find(rtnl_addr_get_ifindex(addr));
    if (link == names.end()) continue;
    pb::NetAddress a;
    a.set_link(link->second);
    a.set_family(static_cast<uint32_t>(family));
    a.set_local(netlink::ip_text(rtnl_addr_get_local(addr)));
    a.set_prefixlen(static_cast<uint32_t>(rtnl_addr_get_prefixlen(addr)));
    std::string peer = netlink::ip_text(rtnl_addr_get_peer(addr));
    if (peer != a.local()) a.set_peer(peer);
    a.set_broadcast(netlink::ip_text(rtnl_addr_get_broadcast(addr)));
    a.set_scope(static_cast<uint32_t>(rtnl_addr_get_scope(addr)));
    a.set_flags(rtnl_addr_get_flags(addr));
    if (const char* label = rtnl_addr_get_label(addr); label && family == AF_INET) a.set_label(label);
    a.set_valid_lft(rtnl_addr_get_valid_lifetime(addr));
    a.set_preferred_lft(rtnl_addr_get_preferred_lifetime(addr));
    if (has_launcher_veth(config) && a.link() == config->net().container_ifname()) {
      // The launcher's address, and on a bridge the link-local address of the MAC the launcher
      // derives from it (a copy at another address gets its own).
      if (family == AF_INET && fmt::format("{}/{}", a.local(), a.prefixlen()) == config->net().ip_cidr())
        a.set_launcher(true);
      if (family == AF_INET6 && a.scope() == RT_SCOPE_LINK && config->net().mode() == "bridge") a.set_launcher(true);
    }
    if (a.local().empty()) continue;
    *out.add_addresses() = std::move(a);
  }
}

std::string describe_route(const pb::NetRoute& r) {
  std::string text = r.dst().empty() ? "default" : fmt::format("{}/{}", r.dst(), r.dst_len());
  for (const auto& nh : r.nexthops()) {
    if (!nh.gateway().empty()) text += " via " + nh.gateway();
    if (!nh.link().empty()) text += " dev " + nh.link();
  }
  return text;
}

void collect_routes(pid_t pid, nl_sock* sock, const pb::ContainerConfig* config,
                    const std::map<int, std::string>& names, pb::NetState& out) {
  nl_cache* raw = nullptr;
  int err = rtnl_route_alloc_cache(sock, AF_UNSPEC, 0, &raw);
  if (err < 0) fail("netlink: list routes: {}", nl_geterror(err));
  netlink::Cache cache(raw);
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* route = reinterpret_cast<rtnl_route*>(obj);
    const int family = rtnl_route_get_family(route);
    if (family != AF_INET && family != AF_INET6) continue;
    // The kernel's own (a prefix route of an address, the local table's entries) come back
    // with the addresses and links.
    if (rtnl_route_get_protocol(route) == RTPROT_KERNEL) continue;
    pb::NetRoute r;
    r.set_family(static_cast<uint32_t>(family));
    nl_addr* dst = rtnl_route_get_dst(route);
    r.set_dst(netlink::ip_text(dst));
    r.set_dst_len(dst ? nl_addr_get_prefixlen(dst) : 0);
    r.set_table(rtnl_route_get_table(route));
    r.set_protocol(rtnl_route_get_protocol(route));
    r.set_scope(rtnl_route_get_scope(route));
    r.set_type(rtnl_route_get_type(route));
    r.set_priority(rtnl_route_get_priority(route));
    r.set_pref_src(netlink::ip_text(rtnl_route_get_pref_src(route)));
    uint32_t mtu = 0;
    if (rtnl_route_get_metric(route, RTAX_MTU, &mtu) == 0) r.set_mtu(mtu);
    for (int i = 0; i < rtnl_route_get_nnexthops(route); ++i) {
      rtnl_nexthop* nh = rtnl_route_nexthop_n(route, i);
      auto* n = r.add_nexthops();
      n->set_gateway(netlink::ip_text(rtnl_route_nh_get_gateway(nh)));
      if (auto link = names.find(rtnl_route_nh_get_ifindex(nh)); link != names.end()) n->set_link(link->second);
      n->set_weight(rtnl_route_nh_get_weight(nh));
      n->set_flags(rtnl_route_nh_get_flags(nh));
    }
    if (r.table() != RT_TABLE_MAIN)
      throw UnsupportedError(fmt::format(
          "pid {}: route {} is in routing table {} of the job's network namespace: only the main table's routes are "
          "restored. Remove it (or move it to the main table) before the dump.",
          pid, describe_route(r), r.table()));
    if (has_launcher_veth(config) && family == AF_INET && r.dst_len() == 0 && r.nexthops_size() == 1 &&
        r.nexthops(0).gateway() == strip_prefix(config->net().host_ip()) &&
        r.nexthops(0).link() == config->net().container_ifname())
      r.set_launcher(true);
    *out.add_routes() = std::move(r);
  }
}

void collect_neighbours(nl_sock* sock, const std::map<int, std::string>& names, pb::NetState& out) {
  nl_cache* raw = nullptr;
  int err = rtnl_neigh_alloc_cache(sock, &raw);
  if (err < 0) fail("netlink: list neighbours: {}", nl_geterror(err));
  netlink::Cache cache(raw);
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* neigh = reinterpret_cast<rtnl_neigh*>(obj);
    if ((rtnl_neigh_get_state(neigh) & NUD_PERMANENT) == 0) continue;
    nl_addr* dst = rtnl_neigh_get_dst(neigh);
    nl_addr* lladdr = rtnl_neigh_get_lladdr(neigh);
    auto link = names.find(rtnl_neigh_get_ifindex(neigh));
    if (!dst || !lladdr || link == names.end()) continue;
    const int family = nl_addr_get_family(dst);
    if (family != AF_INET && family != AF_INET6) continue;
    auto* n = out.add_neighbours();
    n->set_link(link->second);
    n->set_family(static_cast<uint32_t>(family));
    n->set_dst(netlink::ip_text(dst));
    n->set_lladdr(std::string(static_cast<const char*>(nl_addr_get_binary_addr(lladdr)), nl_addr_get_len(lladdr)));
  }
}

// Policy routing is not restored: a rule besides a fresh namespace's (local, main, default)
// refuses the dump.
void refuse_rules(pid_t pid, nl_sock* sock) {
  nl_cache* raw = nullptr;
  int err = rtnl_rule_alloc_cache(sock, AF_UNSPEC, &raw);
  if (err < 0) fail("netlink: list routing rules: {}", nl_geterror(err));
  netlink::Cache cache(raw);
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* rule = reinterpret_cast<rtnl_rule*>(obj);
    const int family = rtnl_rule_get_family(rule);
    if (family != AF_INET && family != AF_INET6) continue;
    const uint32_t prio = rtnl_rule_get_prio(rule), table = rtnl_rule_get_table(rule);
    if ((prio == 0 && table == RT_TABLE_LOCAL) || (prio == 32766 && table == RT_TABLE_MAIN) ||
        (prio == 32767 && table == RT_TABLE_DEFAULT))
      continue;
    throw UnsupportedError(fmt::format(
        "pid {}: routing rule {} (IPv{}, table {}) in the job's network namespace: policy routing is not restored. "
        "Remove the rule before the dump.",
        pid, prio, family == AF_INET ? 4 : 6, table));
  }
}

// Walks the messages of a netlink dump request (one sent on sock) until its end; fn sees each.
template <typename Fn>
void read_dump(int sock, Fn&& fn) {
  alignas(nlmsghdr) char buf[16384];
  for (;;) {
    ssize_t n = ::recv(sock, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) return;
      fn(h);
    }
  }
}

// The string attribute `type` among the attributes that start `offset` bytes into h's payload.
std::string string_attribute(const nlmsghdr* h, size_t offset, unsigned type) {
  int rest = static_cast<int>(h->nlmsg_len) - static_cast<int>(NLMSG_HDRLEN + NLMSG_ALIGN(offset));
  auto* a = reinterpret_cast<const nlattr*>(static_cast<const char*>(NLMSG_DATA(h)) + NLMSG_ALIGN(offset));
  while (rest >= static_cast<int>(sizeof(nlattr)) && a->nla_len >= sizeof(nlattr) && a->nla_len <= rest) {
    if ((a->nla_type & NLA_TYPE_MASK) == type) {
      const char* text = reinterpret_cast<const char*>(a) + NLA_HDRLEN;
      return std::string(text, strnlen(text, a->nla_len - NLA_HDRLEN));
    }
    const int step = NLA_ALIGN(a->nla_len);
    rest -= step;
    a = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(a) + step);
  }
  return "";
}

// Traffic control is not restored: a queueing discipline other than the kernel's (noqueue on
// the links a namespace holds, noop on one that is down) refuses the dump. (A request of our
// own: reading libnl's qdisc cache crashed the statically linked stasis.)
void refuse_qdiscs(pid_t pid, const std::map<int, std::string>& names) {
  UniqueFd sock(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock) fail_errno(errno, "socket(NETLINK_ROUTE)");
  struct {
    nlmsghdr header;
    tcmsg body;
  } request{};
  request.header.nlmsg_len = sizeof request;
  request.header.nlmsg_type = RTM_GETQDISC;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.header.nlmsg_seq = 1;
  request.body.tcm_family = AF_UNSPEC;
  if (::send(sock.get(), &request, sizeof request, 0) < 0) fail_errno(errno, "netlink: list queueing disciplines");
  read_dump(sock.get(), [&](const nlmsghdr* h) {
    if (h->nlmsg_type != RTM_NEWQDISC) return;
    const std::string kind = string_attribute(h, sizeof(tcmsg), TCA_KIND);
    if (kind.empty() || kind == "noqueue" || kind == "noop") return;
    auto link = names.find(static_cast<const tcmsg*>(NLMSG_DATA(h))->tcm_ifindex);
    throw UnsupportedError(fmt::format(
        "pid {}: queueing discipline {} on link {} in the job's network namespace: traffic control is not restored. "
        "Delete it (tc qdisc del) before the dump.",
        pid, kind, link == names.end() ? "?" : link->second));
  });
}

// The names of the nftables tables of the caller's network namespace (one request, NFT_MSG_GETTABLE
// dump); none when this kernel has no nf_tables.
std::vector<std::string> nft_tables() {
  UniqueFd sock(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER));
  if (!sock) return {};
  struct {
    nlmsghdr header;
    nfgenmsg body;
  } request{};
  request.header.nlmsg_len = sizeof request;
  request.header.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.header.nlmsg_seq = 1;
  request.body.nfgen_family = AF_UNSPEC;
  request.body.version = NFNETLINK_V0;
  if (::send(sock.get(), &request, sizeof request, 0) < 0) return {};
  std::vector<std::string> out;
  read_dump(sock.get(), [&](const nlmsghdr* h) {
    if (h->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE)) return;
    std::string name = string_attribute(h, sizeof(nfgenmsg), NFTA_TABLE_NAME);
    // The network lock of this very dump (--tcp-established), which the restore makes anew.
    if (name.rfind(launcher::kNetLockTablePrefix, 0) == 0) return;
    out.push_back(name.empty() ? "?" : name);
  });
  return out;
}

// Firewall rules are not restored: a namespace with nftables tables, or with tables of the
// legacy iptables, refuses the dump rather than come back open.
void refuse_firewall(pid_t pid) {
  std::vector<std::string> tables;
  for (const auto& name : nft_tables()) tables.push_back("nftables " + name);
  // /proc/thread-self: /proc/self/net is the namespace of the thread group's leader, not ours.
  for (const char* legacy : {"ip_tables_names", "ip6_tables_names", "arp_tables_names"}) {
    std::string names;
    try {
      names = read_file(fs::path("/proc/thread-self/net") / legacy);
    } catch (const std::exception&) {
      continue;
    }
    for (size_t at = 0; at < names.size();) {
      size_t nl = names.find('\n', at);
      if (nl == std::string::npos) nl = names.size();
      const std::string tool = std::string(legacy).substr(0, std::string(legacy).find('_')) + "tables";
      if (nl > at) tables.push_back(tool + " " + names.substr(at, nl - at));
      at = nl + 1;
    }
  }
  if (tables.empty()) return;
  std::string list;
  for (const auto& t : tables) list += (list.empty() ? "" : ", ") + t;
  throw UnsupportedError(fmt::format(
      "pid {}: the job's network namespace has firewall tables ({}): firewall rules are not restored. Delete "
      "them before the dump.",
      pid, list));
}

}  // namespace

NetSysctlDefaults start_reading_net_defaults() {
  return std::async(std::launch::async, [] {
           std::map<std::string, std::string> fresh;
           run_in_fresh_namespaces(CLONE_NEWNET, [&] { fresh = read_net_sysctls(); });
           return fresh;
         })
      .share();
}

std::optional<pb::NetState> collect_net(pid_t pid, const pb::NamespaceState& namespaces,
                                        const pb::ContainerConfig* config, NetSysctlDefaults defaults) {
  bool own = false;
  for (const auto& e : namespaces.namespaces())
    if (e.kind() == "net") own = e.own();
  if (!own) return std::nullopt;
  const auto started = std::chrono::steady_clock::now();
  // Read on another CPU while the job's namespace is read here, when the caller did not start it.
  if (!defaults.valid()) defaults = start_reading_net_defaults();
  pb::NetState out;
  std::map<std::string, std::string> job_sysctls;
  with_context(fmt::format("read the network namespace of pid {}", pid), [&] {
    run_in_namespaces(pid, {"net"}, [&] {
      netlink::Sock sock = netlink::connect_route();
      std::map<int, std::string> names;
      collect_links(pid, sock.get(), config, out, names);
      collect_addresses(sock.get(), config, names, out);
      collect_routes(pid, sock.get(), config, names, out);
      refuse_rules(pid, sock.get());
      refuse_firewall(pid);
      refuse_qdiscs(pid, names);
      collect_neighbours(sock.get(), names, out);
      job_sysctls = read_net_sysctls();
    });
  });
  for (auto& s : changed_sysctls(job_sysctls, defaults.get())) *out.add_sysctls() = std::move(s);
  log::debug("pid {}: {} link(s), {} address(es), {} route(s), {} neighbour(s), {} sysctl(s) of its network namespace "
             "saved in {:.1f} ms",
             pid, out.links_size(), out.addresses_size(), out.routes_size(), out.neighbours_size(), out.sysctls_size(),
             std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
  return out;
}

void write_net(const images::Checkpoint& checkpoint, const std::optional<pb::NetState>& net) {
  if (!net) return;
  images::write_single(checkpoint.path(images::ImageType::Net), images::ImageType::Net, *net);
}

}  // namespace stasis::dump
