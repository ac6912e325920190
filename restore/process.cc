#include "restore/process.h"

#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/error.h"

namespace stasis::restore {

void apply_process_attributes(const pb::TaskCore& core) {
  umask(core.umask());
  if (!core.root().empty() && core.root() != "/") {
    if (chroot(core.root().c_str()) < 0) fail_errno(errno, "chroot {}", core.root());
  }
  if (!core.cwd().empty() && chdir(core.cwd().c_str()) < 0) fail_errno(errno, "chdir {}", core.cwd());
  if (personality(core.personality()) < 0) fail_errno(errno, "personality {:#x}", core.personality());
  if (!core.comm().empty() && prctl(PR_SET_NAME, core.comm().c_str()) < 0) fail_errno(errno, "set name {}", core.comm());
  // Before the threads are created, which inherit it.
  if (setpriority(PRIO_PROCESS, 0, core.nice()) < 0) fail_errno(errno, "setpriority nice {}", core.nice());
}

void apply_rlimits(const pb::TaskCore& core) {
  for (const auto& limit : core.rlimits()) {
    const auto resource = static_cast<__rlimit_resource>(limit.resource());
    rlimit current;
    if (getrlimit(resource, &current) < 0) fail_errno(errno, "getrlimit {}", limit.resource());
    rlimit wanted{limit.cur(), limit.max()};
    if (wanted.rlim_max > current.rlim_max) wanted.rlim_max = current.rlim_max;
    if (wanted.rlim_cur > wanted.rlim_max) wanted.rlim_cur = wanted.rlim_max;
    if (setrlimit(resource, &wanted) < 0)
      fail_errno(errno, "setrlimit {} to {}/{}", limit.resource(), wanted.rlim_cur, wanted.rlim_max);
  }
}

void restore_dumpable(Remote& leader, const pb::TaskCore& core) {
  // 2 (SUID_DUMP_ROOT) is the kernel's own and cannot be set: 0 is the safer of the others.
  const uint64_t dumpable = core.dumpable() == 1 ? 1 : 0;
  leader.call_checked("prctl(PR_SET_DUMPABLE)", SYS_prctl, PR_SET_DUMPABLE, dumpable, 0, 0, 0);
}

}  // namespace stasis::restore
