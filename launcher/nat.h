// The bridge's NAT through nftables: one table of ours, `ip stasis`, holding
//   - masquerade of the bridge's subnet towards anything outside it (containers reach out),
//   - a map `ports` (protocol . host port -> container address . port) used by DNAT rules on
//     the prerouting hook (clients from other hosts or namespaces) and the output hook
//     (clients on this host connecting to one of its own addresses, 127.0.0.1 included),
//   - masquerade of DNATed connections from the host itself or the subnet, so that the
//     container's replies come back through the host.
// A published port is one element of the map, keyed by protocol and host port: a container's
// ports are removed by those keys (recorded in its state), so `rm -f` clears them even after a
// crash of stasis. The rules go through libnftables, run by our helper `stasis-nft`
// (launcher/nft/), which must be installed beside `stasis`.
#pragma once

#include <string>

#include "container.pb.h"

namespace stasis::launcher::nat {

// Runs nftables commands as one atomic batch through stasis-nft, in the network namespace of
// netns_fd when it is not -1; returns libnftables' messages when the batch fails and
// may_fail (else throws them). Also the network lock of dumps (dump/net_lock.h).
std::string run_batch(const std::string& commands, bool may_fail, int netns_fd = -1);

// Replaces any table `ip stasis` by a fresh one for this subnet ("10.88.0.0/16") and bridge.
void install(const std::string& subnet, const std::string& bridge);
// Deletes the table; no error when there is none.
void uninstall();
// Adds the DNAT of port to container_ip ("10.88.0.2"), replacing a stale one for its key.
void publish(const std::string& container_ip, const pb::PortMapping& port);
// Removes the DNAT of this host port; no error when there is none.
void unpublish(const pb::PortMapping& port);

}  // namespace stasis::launcher::nat
