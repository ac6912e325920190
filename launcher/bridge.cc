#include "launcher/bridge.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <unistd.h>

#include <optional>
#include <sstream>
#include <vector>

#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"
#include "launcher/config.h"
#include "launcher/nat.h"
#include "launcher/network.h"

namespace stasis::launcher::bridge {

namespace fs = std::filesystem;

namespace {

const fs::path kDir = "/run/stasis/bridge";

struct Owner {
  std::string root, name;
  bool operator==(const Owner&) const = default;
};

std::string root_key(const fs::path& root) { return fs::weakly_canonical(fs::absolute(root)).string(); }

fs::path address_lease(uint32_t address) { return kDir / ("ip-" + Ipv4Cidr{address, 32}.address_string()); }
fs::path port_lease(const pb::PortMapping& port) {
  return kDir / fmt::format("{}-{}", port.protocol(), port.host_port());
}

std::optional<Owner> read_lease(const fs::path& lease) {
  std::error_code ec;
  if (!fs::exists(lease, ec)) return std::nullopt;
  std::istringstream in(read_file(lease));
  Owner owner;
  if (!std::getline(in, owner.root) || !std::getline(in, owner.name)) return std::nullopt;
  return owner;
}

// The owner's network config, when its state file exists and says bridge.
std::optional<pb::NetConfig> owner_net(const Owner& owner) {
  fs::path state_file = fs::path(owner.root) / (owner.name + ".state");
  std::error_code ec;
  if (!fs::exists(state_file, ec)) return std::nullopt;
  pb::ContainerState state;
  try {
    if (!state.ParseFromString(read_file(state_file))) return std::nullopt;
  } catch (const Error&) {
    return std::nullopt;
  }
  if (state.config().net().mode() != "bridge") return std::nullopt;
  return state.config().net();
}

uint32_t address_of(const std::string& cidr) { return parse_ipv4(cidr.substr(0, cidr.find('/')), "--ip"); }

// Who holds this address, when that lease still counts.
std::optional<Owner> address_holder(uint32_t address) {
  auto owner = read_lease(address_lease(address));
  if (!owner) return std::nullopt;
  auto net = owner_net(*owner);
  if (!net || net->ip_cidr().empty() || address_of(net->ip_cidr()) != address) return std::nullopt;
  return owner;
}

std::optional<Owner> port_holder(const pb::PortMapping& port) {
  auto owner = read_lease(port_lease(port));
  if (!owner) return std::nullopt;
  auto net = owner_net(*owner);
  if (!net) return std::nullopt;
  for (const auto& p : net->ports()) {
    if (p.host_port() == port.host_port() && p.protocol() == port.protocol()) return owner;
  }
  return std::nullopt;
}

bool any_address_held() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kDir, ec)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind("ip-", 0) != 0) continue;
    in_addr a{};
    if (::inet_pton(AF_INET, file.c_str() + 3, &a) == 1 && address_holder(ntohl(a.s_addr))) return true;
  }
  return false;
}

void write_lease(const fs::path& lease, const Owner& owner) {
  write_file_atomic(lease, owner.root + "\n" + owner.name + "\n", /*sync=*/false);
}

void write_sysctl(const fs::path& file, const char* value) {
  with_context(fmt::format("set {}", file.string()), [&] { write_file(file, value); });
}

// The bridge, its NAT and every lease: gone.
void teardown() {
  nat::uninstall();
  net::delete_link(kBridgeName);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kDir, ec)) {
    if (entry.path().filename() != ".lock") fs::remove(entry.path(), ec);
  }
}

// The bridge's subnet, after making the bridge when missing.
Ipv4Cidr ensure_bridge(const std::string& requested) {
  if (net::link_exists(kBridgeName)) {
    std::string current;
    std::error_code ec;
    if (fs::exists(kDir / "subnet", ec)) current = read_file(kDir / "subnet");
    if (!current.empty() && current.back() == '\n') current.pop_back();
    if (!current.empty() && any_address_held()) {
      if (!requested.empty() && requested != current) {
        fail("the bridge {} is on subnet {}, which its containers use: --subnet {} can only apply once they are "
             "removed", kBridgeName, current, requested);
      }
      return parse_cidr_network(current, "subnet");
    }
    // Nobody uses it (stasis ended before removing it): start afresh.
    teardown();
  }
  const std::string subnet_text = requested.empty() ? kDefaultSubnet : requested;
  const Ipv4Cidr subnet = parse_cidr_network(subnet_text, "--subnet");
  const Ipv4Cidr gateway{subnet.address + 1, subnet.prefix};
  if (std::string other = net::link_in_subnet(gateway.to_string()); !other.empty()) {
    fail("the subnet {} of bridge {} is already on the host's link {}: choose another with --subnet", subnet_text,
         kBridgeName, other);
  }
  net::create_bridge(kBridgeName);
  try {
    net::add_address(kBridgeName, gateway.to_string());
    net::set_link_up(kBridgeName);
    // Containers reach out through the host, which must route; 127.0.0.1 as the source of a
    // connection DNATed to a container must be allowed out of the bridge.
    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1");
    write_sysctl(fmt::format("/proc/sys/net/ipv4/conf/{}/route_localnet", kBridgeName), "1");
    nat::install(subnet.to_string(), kBridgeName);
    write_file_atomic(kDir / "subnet", subnet.to_string() + "\n", /*sync=*/false);
  } catch (...) {
    try {
      net::delete_link(kBridgeName);
    } catch (const Error&) {
    }
    throw;
  }
  return subnet;
}

std::string resolv_conf() {
  std::error_code ec;
  std::string text = fs::exists("/etc/resolv.conf", ec) ? read_file("/etc/resolv.conf") : "";
  // A resolver on the host's loopback (systemd-resolved's stub) is not the container's.
  if (text.find("nameserver 127.") != std::string::npos && fs::exists("/run/systemd/resolve/resolv.conf", ec)) {
    text = read_file("/run/systemd/resolve/resolv.conf");
  }
  std::string out = "# written by stasis from the host's resolv.conf\n";
  std::istringstream lines(text);
  bool any = false;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("nameserver 127.", 0) == 0 || line.rfind("nameserver ::1", 0) == 0) continue;
    if (line.rfind("nameserver", 0) == 0) any = true;
    out += line + "\n";
  }
  if (!any) out += "# the host's resolvers listen on its loopback only, which the container cannot reach\n";
  return out;
}

}  // namespace

Lock::Lock() {
  std::error_code ec;
  fs::create_directories(kDir, ec);
  if (ec) fail("create {}: {}", kDir.string(), ec.message());
  fd_ = open_or_throw(kDir / ".lock", O_RDWR | O_CREAT, 0600);
  while (::flock(fd_.get(), LOCK_EX) < 0) {
    if (errno != EINTR) fail_errno(errno, "flock {}", (kDir / ".lock").string());
  }
}

void reserve(const Lock&, const fs::path& root, pb::ContainerConfig& config, bool drop_taken_ports) {
  auto* net = config.mutable_net();
  const Owner self{root_key(root), config.name()};
  const Ipv4Cidr subnet = ensure_bridge(net->subnet());
  const uint32_t mask = ~((1u << (32 - subnet.prefix)) - 1);
  const uint32_t gateway = subnet.address + 1, broadcast = subnet.address | ~mask;

  std::vector<fs::path> written;
  std::vector<pb::PortMapping> published;
  try {
    uint32_t address = 0;
    if (!net->ip_cidr().empty()) {
      address = address_of(net->ip_cidr());
      if ((address & mask) != subnet.address || address == gateway || address == broadcast ||
          address == subnet.address) {
        fail("--ip {} is not a free host address of the bridge's subnet {} (its first address, {}, is the "
             "gateway)", net->ip_cidr(), subnet.to_string(), Ipv4Cidr{gateway, 32}.address_string());
      }
      if (auto holder = address_holder(address)) {
        fail("address {} is held by container {} (under {}): give container {} another with --ip",
             Ipv4Cidr{address, 32}.address_string(), holder->name, holder->root, config.name());
      }
    } else {
      for (uint32_t candidate = gateway + 1; candidate < broadcast; ++candidate) {
        if (!address_holder(candidate)) {
          address = candidate;
          break;
        }
      }
      if (address == 0) fail("no free address left in the bridge's subnet {}", subnet.to_string());
    }
    write_lease(address_lease(address), self);
    written.push_back(address_lease(address));
    const std::string ip = Ipv4Cidr{address, 32}.address_string();

    google::protobuf::RepeatedPtrField<pb::PortMapping> kept;
    for (const auto& port : net->ports()) {
      if (auto holder = port_holder(port)) {
        if (!drop_taken_ports) {
          fail("host port {}/{} is published by container {} (under {})", port.host_port(), port.protocol(),
               holder->name, holder->root);
        }
        log::warn("host port {}/{} stays with container {}: container {} does not publish it", port.host_port(),
                  port.protocol(), holder->name, config.name());
        continue;
      }
      write_lease(port_lease(port), self);
      written.push_back(port_lease(port));
      nat::publish(ip, port);
      published.push_back(port);
      *kept.Add() = port;
    }
    net->mutable_ports()->Swap(&kept);
    net->set_ip_cidr(Ipv4Cidr{address, subnet.prefix}.to_string());
    net->set_host_ip(Ipv4Cidr{gateway, subnet.prefix}.to_string());
    net->set_subnet(subnet.to_string());
  } catch (...) {
    for (const auto& port : published) {
      try {
        nat::unpublish(port);
      } catch (const Error&) {
      }
    }
    std::error_code ec;
    for (const auto& lease : written) fs::remove(lease, ec);
    // A bridge made for this container alone goes with it.
    try {
      if (!any_address_held()) teardown();
    } catch (const Error&) {
    }
    throw;
  }
}

void write_files(const fs::path& root, pb::ContainerConfig& config) {
  auto* net = config.mutable_net();
  const std::string ip = net->ip_cidr().substr(0, net->ip_cidr().find('/'));
  std::string names = config.hostname();
  if (config.name() != config.hostname()) names += " " + config.name();
  const fs::path hosts = root / (config.name() + ".hosts");
  write_file_atomic(hosts,
                    fmt::format("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n", ip, names),
                    /*sync=*/false);
  ::chmod(hosts.c_str(), 0644);
  net->set_hosts_file(hosts.string());
  net->clear_resolv_file();
  if (!config.rootfs().empty()) {
    const fs::path resolv = root / (config.name() + ".resolv.conf");
    write_file_atomic(resolv, resolv_conf(), /*sync=*/false);
    ::chmod(resolv.c_str(), 0644);
    net->set_resolv_file(resolv.string());
  }
}

void attach(const pb::ContainerConfig& config) {
  net::set_master(config.net().host_ifname(), kBridgeName);
  net::set_link_up(config.net().host_ifname());
}

void release(const fs::path& root, const pb::ContainerConfig& config) {
  const auto& net = config.net();
  if (net.mode() != "bridge") return;
  for (const std::string& file : {net.hosts_file(), net.resolv_file()}) {
    if (!file.empty()) ::unlink(file.c_str());
  }
  try {
    const Owner self{root_key(root), config.name()};
    Lock lock;
    std::error_code ec;
    for (const auto& port : net.ports()) {
      if (read_lease(port_lease(port)) != self) continue;
      nat::unpublish(port);
      fs::remove(port_lease(port), ec);
    }
    if (!net.ip_cidr().empty()) {
      const fs::path lease = address_lease(address_of(net.ip_cidr()));
      if (read_lease(lease) == self) fs::remove(lease, ec);
    }
    if (net::link_exists(kBridgeName) && !any_address_held()) teardown();
  } catch (const std::exception& e) {
    log::warn("container {}: cleaning up its bridge network: {}", config.name(), e.what());
  }
}

}  // namespace stasis::launcher::bridge
