// net.img: the contents of the job's own network namespace, read from inside it through
// rtnetlink (a helper thread joins it): every link (loopback, the launcher's veth, veth pairs
// with both ends inside, dummy links), their state, MTU and MAC, their IPv4 and IPv6
// addresses, the routes of the main table that the kernel did not make itself, and the
// sysctls under /proc/sys/net/{core,ipv4,ipv6,unix} that differ from a fresh namespace's.
#pragma once

#include <sys/types.h>

#include <future>
#include <map>
#include <optional>
#include <string>

#include "container.pb.h"
#include "images/checkpoint.h"
#include "namespaces.pb.h"
#include "net.pb.h"

namespace stasis::dump {

// The sysctls of a fresh network namespace (name under /proc/sys/net -> value), which the job's
// are compared with. Reading them takes a few ms (a namespace is made for it): the dump starts
// it on another thread before it freezes the job.
using NetSysctlDefaults = std::shared_future<std::map<std::string, std::string>>;
NetSysctlDefaults start_reading_net_defaults();

// Nothing when the job shares its host's network namespace (--net host, a --pid dump of a host
// process): the host's links are not the job's to take. config is the container's (its veth
// and the address and route the launcher gave it are the launcher's to make again), null for
// a --pid dump. Throws UnsupportedError, the job untouched, for what restore could not make:
// a link of another kind (bridge, tun, vxlan, macvlan...), a veth whose peer is outside but
// that the launcher did not make, a route in another table than main.
// defaults: from start_reading_net_defaults(); read here when not given.
std::optional<pb::NetState> collect_net(pid_t pid, const pb::NamespaceState& namespaces,
                                        const pb::ContainerConfig* config, NetSysctlDefaults defaults = {});

// net.img, written only when there is one.
void write_net(const images::Checkpoint& checkpoint, const std::optional<pb::NetState>& net);

}  // namespace stasis::dump
