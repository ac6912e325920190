// net.img back into the restored container's network namespace (see dump/net.h), before the
// job runs: the namespace-wide sysctls, the links (loopback and the launcher's veth are there
// already: their MTU, MAC and flags are put back; veth pairs inside and dummy links are made
// with their old index, name, MAC and MTU), the links' own sysctls, the addresses (IPv6 ones
// without duplicate address detection: they were in use), and the routes.
#pragma once

#include <sys/types.h>

#include <optional>

#include "images/checkpoint.h"
#include "net.pb.h"

namespace stasis::restore {

// Nothing when the checkpoint has no net.img (the job shared its host's network namespace).
std::optional<pb::NetState> load_net(const images::Checkpoint& checkpoint);

// Recreates them in the network namespace of pid (a helper thread joins it). Throws on the
// first failure, naming the link, address, route or sysctl; what was made dies with the
// namespace when the caller removes the container.
void restore_net(pid_t pid, const pb::NetState& net);

}  // namespace stasis::restore
