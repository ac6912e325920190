#include "restore/process.h"

#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/compat.h"
#include "common/error.h"
#include "common/file_util.h"

namespace stasis::restore {

void apply_process_attributes(const pb::TaskCore& core) {
  umask(core.umask());
  if (!core.root().empty() && core.root() != "/") {
    if (chroot(core.root().c_str()) < 0) fail_errno(errno, "chroot {}", core.root());
  }
  // A deleted working directory (" (deleted)") was entered as a ghost by install_fd_table.
  struct stat cwd;
  const bool in_ghost_cwd = stat(".", &cwd) == 0 && cwd.st_nlink == 0;
  if (!core.cwd().empty() && !in_ghost_cwd && chdir(core.cwd().c_str()) < 0) fail_errno(errno, "chdir {}", core.cwd());
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

void restore_thread_attributes(Remote& thread, pid_t host_tid, const pb::ThreadCore& core) {
  if (core.pdeathsig() != 0)
    thread.call_checked("prctl(PR_SET_PDEATHSIG)", SYS_prctl, PR_SET_PDEATHSIG, static_cast<uint64_t>(core.pdeathsig()));
  if (core.has_timerslack_ns())
    write_file(fmt::format("/proc/{}/timerslack_ns", host_tid), std::to_string(core.timerslack_ns()));
  if (core.ioprio() != 0 && ::syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, host_tid, core.ioprio()) < 0)
    fail_errno(errno, "tid {}: ioprio_set {:#x}", host_tid, core.ioprio());
}

void restore_late_process_attributes(Remote& leader, pid_t host_pid, const pb::TaskCore& core) {
  if (core.child_subreaper())
    leader.call_checked("prctl(PR_SET_CHILD_SUBREAPER)", SYS_prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  if (core.has_oom_score_adj())
    write_file(fmt::format("/proc/{}/oom_score_adj", host_pid), std::to_string(core.oom_score_adj()));
  if (core.has_coredump_filter())
    write_file(fmt::format("/proc/{}/coredump_filter", host_pid), fmt::format("{:#x}", core.coredump_filter()));
  if (core.mdwe() != 0)
    leader.call_checked("prctl(PR_SET_MDWE)", SYS_prctl, PR_SET_MDWE, core.mdwe(), 0, 0, 0);
}

}  // namespace stasis::restore
