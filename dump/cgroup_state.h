// cgroup.img: the job's cgroup path and the limits read back from its cgroup files.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>

#include "cgroup.pb.h"
#include "common/cgroup.h"

namespace stasis::dump {

// controller -> absolute cgroup directory of pid ("unified" for v2), from /proc/PID/cgroup.
std::map<std::string, std::string> cgroup_paths_of(pid_t pid, CgroupDriver driver);

// Reads the limits from the cgroup directories (missing files leave a limit at 0).
pb::CgroupState collect_cgroup_state(CgroupDriver driver, const std::map<std::string, std::string>& paths);

}  // namespace stasis::dump
