// cgroup.img at restore: the limits the job's cgroup had at dump time (read from its cgroup
// files, v1 or v2, dump/cgroup_state.cc) become the new container's, which the launcher applies
// when it makes the cgroup, before any restored task runs. They replace those of the config:
// a limit changed after `stasis run` (written to the cgroup) comes back as it was at the dump.
#pragma once

#include <string>

#include "container.pb.h"
#include "images/checkpoint.h"

namespace stasis::restore {

// Sets config's memory_max, cpus, cpu_period_us, pids_max and cpuset from cgroup.img (0 or ""
// where the cgroup had no limit); a checkpoint without cgroup.img keeps the config's. A cpuset
// is cut to the CPUs online here (with a warning); none of them online fails.
void apply_cgroup_state(const images::Checkpoint& checkpoint, pb::ContainerConfig& config);

// The CPUs of the list `wanted` that are also in `present` (lists as in cpuset.cpus and
// /sys/devices/system/cpu/online: "0-3,6"), as such a list; "" when none. Throws on a
// malformed list.
std::string cpus_in_both(const std::string& wanted, const std::string& present);

}  // namespace stasis::restore
