#include "launcher/config.h"

#include <arpa/inet.h>
#include <sys/random.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <set>
#include <algorithm>

#include "common/cgroup.h"
#include "common/error.h"
#include "launcher/mounts.h"

namespace stasis::launcher {

namespace {
std::string g_cgroup_parent;  // the global --cgroup-parent, normalized
}  // namespace

void set_cgroup_parent(const std::string& parent) {
  g_cgroup_parent = parent.empty() ? "" : normalize_cgroup_parent(parent);
}

std::string cgroup_parent_for(const std::filesystem::path& root) {
  if (!g_cgroup_parent.empty()) return g_cgroup_parent;
  std::error_code ec;
  std::filesystem::path path = std::filesystem::weakly_canonical(std::filesystem::absolute(root), ec);
  if (ec) path = std::filesystem::absolute(root);
  // "/run/stasis/" is "/run/stasis" (weakly_canonical keeps the slash of a path that does not exist yet).
  path = path.lexically_normal();
  if (path.filename().empty() && path.has_relative_path()) path = path.parent_path();
  if (path == kDefaultStateRoot) return kDefaultCgroupParent;
  // FNV-1a: stable across builds and processes (std::hash need not be).
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : path.string()) hash = (hash ^ c) * 0x100000001b3ull;
  return fmt::format("{}-{:08x}", kDefaultCgroupParent, static_cast<uint32_t>(hash ^ (hash >> 32)));
}

int64_t parse_size(const std::string& text, const std::string& option) {
  auto bad = [&] {
    return UsageError(fmt::format("{}: invalid size '{}' (expected bytes with an optional K, M, G or T suffix)",
                                  option, text));
  };
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) throw bad();
  size_t end = 0;
  unsigned long long value = 0;
  try {
    value = std::stoull(text, &end);
  } catch (const std::exception&) {
    throw bad();
  }
  std::string suffix = text.substr(end);
  if (!suffix.empty() && (suffix.back() == 'b' || suffix.back() == 'B')) suffix.pop_back();
  if (suffix.size() == 2 && (suffix[1] == 'i')) suffix.pop_back();  // "Mi"
  int shift = 0;
  if (suffix.empty()) shift = 0;
  else if (suffix.size() == 1) {
    switch (std::toupper(static_cast<unsigned char>(suffix[0]))) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      default: throw bad();
    }
  } else {
    throw bad();
  }
  if (value == 0) throw UsageError(fmt::format("{}: size must be greater than 0", option));
  if (value > (static_cast<unsigned long long>(INT64_MAX) >> shift)) throw bad();
  return static_cast<int64_t>(value << shift);
}

std::string Ipv4Cidr::address_string() const {
  in_addr a{htonl(address)};
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

std::string Ipv4Cidr::to_string() const { return fmt::format("{}/{}", address_string(), prefix); }

Ipv4Cidr parse_cidr(const std::string& text, const std::string& option) {
  auto bad = [&](const char* why) {
    return UsageError(fmt::format("{}: invalid address '{}' ({})", option, text, why));
  };
  size_t slash = text.find('/');
  if (slash == std::string::npos) throw bad("expected A.B.C.D/PREFIX");
  in_addr a{};
  if (::inet_pton(AF_INET, text.substr(0, slash).c_str(), &a) != 1) throw bad("not an IPv4 address");
  std::string prefix = text.substr(slash + 1);
  if (prefix.empty() || prefix.size() > 2 || !std::isdigit(static_cast<unsigned char>(prefix[0])) ||
      !std::isdigit(static_cast<unsigned char>(prefix.back()))) {
    throw bad("prefix must be a number from 1 to 30");
  }
  int bits = std::stoi(prefix);
  if (bits < 1 || bits > 30) throw bad("prefix must be a number from 1 to 30");
  Ipv4Cidr out{ntohl(a.s_addr), bits};
  uint32_t mask = bits == 32 ? 0xffffffffu : ~((1u << (32 - bits)) - 1);
  uint32_t host = out.address & ~mask;
  if (host == 0 || host == ~mask) throw bad("the network or broadcast address cannot be used by a host");
  return out;
}

pb::PortMapping parse_port(const std::string& text, const std::string& option) {
  auto bad = [&](const char* why) {
    return UsageError(fmt::format("{}: invalid port '{}' ({})", option, text, why));
  };
  std::string spec = text, protocol = "tcp";
  if (size_t slash = spec.find('/'); slash != std::string::npos) {
    protocol = spec.substr(slash + 1);
    spec = spec.substr(0, slash);
    if (protocol != "tcp" && protocol != "udp") throw bad("the protocol is tcp or udp");
  }
  size_t colon = spec.find(':');
  if (colon == std::string::npos) throw bad("expected HOST_PORT:CONTAINER_PORT[/tcp|/udp]");
  auto number = [&](const std::string& digits) -> uint32_t {
    if (digits.empty() || digits.size() > 5) throw bad("ports are numbers from 1 to 65535");
    for (char c : digits) {
      if (!std::isdigit(static_cast<unsigned char>(c))) throw bad("ports are numbers from 1 to 65535");
    }
    unsigned long v = std::stoul(digits);
    if (v < 1 || v > 65535) throw bad("ports are numbers from 1 to 65535");
    return static_cast<uint32_t>(v);
  };
  pb::PortMapping port;
  port.set_host_port(number(spec.substr(0, colon)));
  port.set_container_port(number(spec.substr(colon + 1)));
  port.set_protocol(protocol);
  return port;
}

uint32_t parse_ipv4(const std::string& text, const std::string& option) {
  in_addr a{};
  if (::inet_pton(AF_INET, text.c_str(), &a) != 1) {
    throw UsageError(fmt::format("{}: invalid address '{}' (not an IPv4 address)", option, text));
  }
  return ntohl(a.s_addr);
}

Ipv4Cidr parse_cidr_network(const std::string& text, const std::string& option) {
  size_t slash = text.find('/');
  if (slash == std::string::npos) {
    throw UsageError(fmt::format("{}: invalid subnet '{}' (expected A.B.C.D/PREFIX)", option, text));
  }
  in_addr a{};
  if (::inet_pton(AF_INET, text.substr(0, slash).c_str(), &a) != 1) {
    throw UsageError(fmt::format("{}: invalid subnet '{}' (not an IPv4 address)", option, text));
  }
  const std::string prefix = text.substr(slash + 1);
  int bits = 0;
  if (prefix.empty() || prefix.size() > 2 || !std::all_of(prefix.begin(), prefix.end(), ::isdigit) ||
      (bits = std::stoi(prefix)) < 8 || bits > 29) {
    throw UsageError(fmt::format("{}: invalid subnet '{}' (the prefix is a number from 8 to 29)", option, text));
  }
  const uint32_t mask = ~((1u << (32 - bits)) - 1);
  return Ipv4Cidr{ntohl(a.s_addr) & mask, bits};
}

std::string generate_name() {
  uint32_t r = 0;
  if (::getrandom(&r, sizeof r, 0) != sizeof r) r = static_cast<uint32_t>(::getpid()) * 2654435761u;
  return fmt::format("c-{:08x}", r);
}

std::string host_veth_name(const std::string& container_name) {
  // FNV-1a keeps it short and stable; "stv" marks links as ours.
  uint32_t h = 2166136261u;
  for (unsigned char c : container_name) h = (h ^ c) * 16777619u;
  return fmt::format("stv{:08x}", h);
}

void validate_config(pb::ContainerConfig& config) {
  if (config.argv_size() == 0 || config.argv(0).empty()) {
    throw UsageError("missing command: use 'stasis run [OPTIONS] CMD [ARGS...]'");
  }
  if (config.name().empty()) config.set_name(generate_name());
  const std::string& name = config.name();
  if (name.size() > 64) throw UsageError(fmt::format("--name '{}': at most 64 characters", name));
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      throw UsageError(fmt::format("--name '{}': only letters, digits, '-', '_' and '.' are allowed", name));
    }
  }
  if (name[0] == '.' || name[0] == '-') throw UsageError(fmt::format("--name '{}': must not start with '.' or '-'", name));
  if (config.hostname().empty()) config.set_hostname(name);
  if (config.hostname().size() > 64) throw UsageError("--hostname: at most 64 characters");
  if (config.memory_max() < 0) throw UsageError("--memory must be positive");
  if (config.pids_max() < 0) throw UsageError("--pids must be positive");
  if (config.cpus() < 0 || std::isnan(config.cpus()) || std::isinf(config.cpus())) {
    throw UsageError("--cpus must be a positive number");
  }
  // A restored cgroup's own quota (it comes with its period) may be below what --cpus takes:
  // the kernel accepted it, so restore must too.
  if (config.cpus() > 0 && config.cpus() < 0.01 && config.cpu_period_us() == 0)
    throw UsageError("--cpus must be at least 0.01");
  if (!config.cpuset().empty()) {
    for (char c : config.cpuset()) {
      if (!std::isdigit(static_cast<unsigned char>(c)) && c != ',' && c != '-') {
        throw UsageError(fmt::format("--cpuset '{}': expected a CPU list such as 0-1,3", config.cpuset()));
      }
    }
  }
  for (const auto& kv : config.env()) {
    if (kv.find('=') == std::string::npos || kv[0] == '=') {
      throw UsageError(fmt::format("--env '{}': expected KEY=VALUE", kv));
    }
  }
  if (!config.workdir().empty() && config.workdir()[0] != '/') {
    throw UsageError(fmt::format("--workdir '{}': must be an absolute path", config.workdir()));
  }
  if (!config.rootfs().empty()) {
    if (::access(config.rootfs().c_str(), X_OK) != 0) {
      throw UsageError(fmt::format("--rootfs {}: not an accessible directory", config.rootfs()));
    }
  }

  validate_mounts(config);
  for (const auto& kind : config.host_namespaces()) {
    if (kind != "mnt" && kind != "uts" && kind != "ipc")
      throw UsageError(fmt::format("a container can share only its mount, UTS and IPC namespaces with the host, not {}", kind));
    // The root and the mounts are made in a mount namespace of the container's own.
    if (kind == "mnt" && (!config.rootfs().empty() || config.mounts_size() > 0))
      throw UsageError("a container in the host's mount namespace takes no --rootfs and no -v");
  }

  auto* net = config.mutable_net();
  if (net->mode().empty()) net->set_mode("loopback");
  if (net->mode() == "veth") {
    if (net->ip_cidr().empty()) throw UsageError("--net veth needs --ip CIDR (the container's address)");
    Ipv4Cidr ip = parse_cidr(net->ip_cidr(), "--ip");
    uint32_t mask = ~((1u << (32 - ip.prefix)) - 1);
    if (net->host_ip().empty()) {
      Ipv4Cidr host{(ip.address & mask) + 1, ip.prefix};
      if (host.address == ip.address) {
        throw UsageError(fmt::format("--ip {} is the subnet's first address, which the host side takes; "
                                     "pick another or give --host-ip", net->ip_cidr()));
      }
      net->set_host_ip(host.to_string());
    } else {
      std::string text = net->host_ip();
      if (text.find('/') == std::string::npos) text = fmt::format("{}/{}", text, ip.prefix);
      Ipv4Cidr host = parse_cidr(text, "--host-ip");
      if (host.address == ip.address) throw UsageError("--host-ip must differ from --ip");
      if ((host.address & mask) != (ip.address & mask)) {
        throw UsageError(fmt::format("--host-ip {} is not in the subnet of --ip {}", net->host_ip(), net->ip_cidr()));
      }
      net->set_host_ip(host.to_string());
    }
    if (net->host_ifname().empty()) net->set_host_ifname(host_veth_name(name));
    if (net->container_ifname().empty()) net->set_container_ifname("eth0");
    if (net->host_ifname().size() > 15 || net->container_ifname().size() > 15) {
      throw UsageError("veth interface names are limited to 15 characters");
    }
  } else if (net->mode() == "bridge") {
    // The address is checked against the bridge's subnet, and allocated when absent, under
    // the bridge's lock (launcher/bridge.h).
    if (!net->subnet().empty()) {
      Ipv4Cidr subnet = parse_cidr_network(net->subnet(), "--subnet");
      net->set_subnet(subnet.to_string());
    }
    if (!net->ip_cidr().empty()) {
      std::string text = net->ip_cidr();
      if (text.find('/') == std::string::npos) parse_ipv4(text, "--ip");
      else parse_cidr(text, "--ip");
    }
    if (net->host_ifname().empty()) net->set_host_ifname(host_veth_name(name));
    if (net->container_ifname().empty()) net->set_container_ifname("eth0");
    std::set<std::string> seen;
    for (const auto& p : net->ports()) {
      if (p.host_port() < 1 || p.host_port() > 65535 || p.container_port() < 1 || p.container_port() > 65535 ||
          (p.protocol() != "tcp" && p.protocol() != "udp")) {
        throw UsageError(fmt::format("--publish {}:{}/{}: invalid port", p.host_port(), p.container_port(),
                                     p.protocol()));
      }
      if (!seen.insert(fmt::format("{}/{}", p.host_port(), p.protocol())).second) {
        throw UsageError(fmt::format("--publish: host port {}/{} is given twice", p.host_port(), p.protocol()));
      }
    }
  } else if (net->mode() == "loopback" || net->mode() == "host") {
    if (!net->ip_cidr().empty() || !net->host_ip().empty()) {
      throw UsageError(fmt::format("--ip and --host-ip only apply to --net veth (--ip also to --net bridge), not '{}'", net->mode()));
    }
  } else {
    throw UsageError(fmt::format("--net '{}': expected loopback, veth, bridge or host", net->mode()));
  }
  if (net->mode() != "bridge") {
    if (net->ports_size() > 0) throw UsageError("--publish (-p) needs --net bridge");
    if (!net->subnet().empty()) throw UsageError("--subnet needs --net bridge");
  } else {
    net->clear_host_ip();  // the bridge's address, set once the bridge is known
  }

  CgroupDriver driver = parse_cgroup_driver(config.cgroup_driver());
  config.set_cgroup_driver(cgroup_driver_name(driver));
  if (driver == CgroupDriver::V2 && config.devices_size() > 0) {
    throw UsageError("--device needs the cgroup v1 devices controller (use --cgroup-driver v1)");
  }
}

}  // namespace stasis::launcher
