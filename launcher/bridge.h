// --net bridge: containers' veths are ports of one host bridge, stasis0, whose address is the
// gateway of its subnet (default 10.88.0.0/16). The bridge, its NAT table (launcher/nat.h) and
// net.ipv4.ip_forward=1 come with the first bridged container; the bridge and the table go
// with the last one.
//
// Host-wide bookkeeping (several state roots may share the bridge) lives in /run/stasis/bridge:
//   .lock          flock held around every change below
//   subnet         the bridge's subnet
//   ip-A.B.C.D     an address lease, tcp-PORT / udp-PORT a published host port's: each holds
//                  "ROOT\nNAME\n" of the container that has it.
// A lease counts while its container's state file (ROOT/NAME.state) exists and records that
// address or port; others (a crash of stasis between lease and state) are taken over.
// Leases are written and the state saved under the same lock, so two containers started at
// once never get the same address or port.
#pragma once

#include <filesystem>
#include <string>

#include "common/fd.h"
#include "container.pb.h"

namespace stasis::launcher::bridge {

inline constexpr const char* kBridgeName = "stasis0";
inline constexpr const char* kDefaultSubnet = "10.88.0.0/16";

// The host-wide lock (flock on /run/stasis/bridge/.lock) for its lifetime.
class Lock {
 public:
  Lock();
 private:
  UniqueFd fd_;
};

// Under the lock, for config (mode "bridge", validated): creates the bridge and its NAT when
// missing, leases config's address (or the first free one) and host ports, publishes the ports,
// and fills ip_cidr, host_ip (the gateway) and subnet. A port another container holds fails,
// or with drop_taken_ports is removed from config with a warning (a restored copy beside its
// original). On failure nothing of this is left. Keep the lock until the state is saved.
void reserve(const Lock& lock, const std::filesystem::path& root, pb::ContainerConfig& config,
             bool drop_taken_ports);

// Writes ROOT/NAME.hosts (and, with a rootfs, ROOT/NAME.resolv.conf), recorded in config.
void write_files(const std::filesystem::path& root, pb::ContainerConfig& config);

// The monitor's part: puts the host end of the container's veth on the bridge, up.
void attach(const pb::ContainerConfig& config);

// Releases what reserve and write_files made for this container (its leases, published ports,
// files), and the bridge and its NAT when no other container holds an address. Takes the lock
// itself. Never throws: a container is removed even when the network cannot be cleaned.
void release(const std::filesystem::path& root, const pb::ContainerConfig& config);

}  // namespace stasis::launcher::bridge
