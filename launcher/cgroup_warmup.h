// Moving a process between cgroups takes the kernel's global cgroup_threadgroup_rwsem for
// writing, and the first writer after a quiet spell waits for an RCU grace period (10-15 ms on
// our VMs), after which writers are fast for about one more grace period. start_container
// therefore begins with a no-op move (our own process into the cgroup it is already in) on a
// helper thread: the grace period then runs while we validate, make the cgroup and fork, and
// the real move of PID 1 finds it over or nearly so. Only v2 needs this: on v1 PID 1 moves
// its own single thread, which the kernel does without that lock (Cgroup::join_self).
#pragma once

#include <thread>

#include "common/fd.h"

namespace stasis::launcher {

class CgroupMoveWarmup {
 public:
  CgroupMoveWarmup();   // does nothing when our cgroup cannot be found or opened
  ~CgroupMoveWarmup();  // joins the helper thread
  CgroupMoveWarmup(const CgroupMoveWarmup&) = delete;
  CgroupMoveWarmup& operator=(const CgroupMoveWarmup&) = delete;

 private:
  UniqueFd procs_;
  std::thread thread_;
};

}  // namespace stasis::launcher
