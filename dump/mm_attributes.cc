#include "dump/mm_attributes.h"

#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cstdlib>

#include "common/compat.h"
#include "common/error.h"
#include "common/log.h"
#include "common/proc.h"

namespace stasis::dump {
namespace {

long locked_kb(pid_t pid) {
  const auto status = proc::read_status(pid);
  auto it = status.fields.find("VmLck");
  if (it == status.fields.end()) fail("/proc/{}/status: no VmLck line", pid);
  return std::strtol(it->second.c_str(), nullptr, 10);
}

// mlockall(MCL_FUTURE) sets flags that every new mapping takes, and no file shows them: a page
// mapped now tells. Locked, it adds to VmLck; without MCL_ONFAULT it is also faulted in at once.
uint32_t probe_mlockall(Task& task, Injector& injector) {
  ptrace::SeizedThread& leader = task.threads[0];
  const long before = locked_kb(task.host_pid);
  const long page = injector.call(leader, SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                  static_cast<uint64_t>(-1), 0);
  if (page == -EAGAIN) {
    // Only a locked mapping fails so (over RLIMIT_MEMLOCK): MCL_FUTURE is on. Whether it is on
    // fault cannot be seen then; on fault is the guess that never makes the restored job's
    // mappings fail where the job's own did not (faulting all in would count more against
    // its limit).
    log::warn("pid {}: mlockall(MCL_FUTURE) is on and the job is at its locked-memory limit: restored as "
              "MCL_FUTURE|MCL_ONFAULT (whether it was on fault cannot be told)",
              task.host_pid);
    return MCL_FUTURE | MCL_ONFAULT;
  }
  if (page < 0) fail_errno(static_cast<int>(-page), "tid {}: injected mmap (mlockall probe)", leader.tid());
  uint32_t flags = 0;
  try {
    if (locked_kb(task.host_pid) > before) {
      flags = MCL_FUTURE;
      injector.clear_scratch(1);
      injector.call_checked(leader, "mincore (mlockall probe)", SYS_mincore, static_cast<uint64_t>(page), 4096,
                            injector.scratch());
      if (!(injector.read_scratch<unsigned char>() & 1)) flags |= MCL_ONFAULT;
    }
  } catch (...) {
    injector.call(leader, SYS_munmap, static_cast<uint64_t>(page), 4096);
    throw;
  }
  injector.call_checked(leader, "munmap (mlockall probe)", SYS_munmap, static_cast<uint64_t>(page), 4096);
  return flags;
}

// MEMBARRIER_CMD_GET_REGISTRATIONS (6.3) says it; before, each private expedited command is
// tried (harmless: a barrier among the job's own stopped threads): EPERM when not registered.
// A global expedited registration cannot be seen that way.
uint32_t probe_membarrier(Task& task, Injector& injector) {
  ptrace::SeizedThread& leader = task.threads[0];
  const long got = injector.call(leader, SYS_membarrier, compat::kMembarrierCmdGetRegistrations, 0, 0);
  constexpr long kKnown = MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED |
                          MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE |
                          MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ;
  if (got >= 0 && (got & ~kKnown))
    throw UnsupportedError(fmt::format("pid {}: membarrier registrations {:#x} include ones stasis does not know "
                                       "({:#x}): not supported",
                                       task.host_pid, got, got & ~kKnown));
  if (got >= 0) return static_cast<uint32_t>(got);
  if (got != -EINVAL) fail_errno(static_cast<int>(-got), "tid {}: injected membarrier(GET_REGISTRATIONS)", leader.tid());
  const long supported = injector.call(leader, SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (supported <= 0) return 0;
  uint32_t registered = 0;
  const std::pair<int, int> commands[] = {
      {MEMBARRIER_CMD_PRIVATE_EXPEDITED, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED},
      {MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE},
      {MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ}};
  for (const auto& [command, registration] : commands) {
    if (!(supported & command)) continue;
    if (injector.call(leader, SYS_membarrier, static_cast<uint64_t>(command), 0, 0) == 0)
      registered |= static_cast<uint32_t>(registration);
  }
  return registered;
}

}  // namespace

pb::MmAttributes collect_mm_attributes(Task& task, Injector& injector) {
  pb::MmAttributes attributes;
  ptrace::SeizedThread& leader = task.threads[0];
  attributes.set_thp_disable(static_cast<uint32_t>(
      injector.call_checked(leader, "prctl(PR_GET_THP_DISABLE)", SYS_prctl, PR_GET_THP_DISABLE, 0, 0, 0, 0)));
  attributes.set_mlockall(probe_mlockall(task, injector));
  attributes.set_membarrier(probe_membarrier(task, injector));
  log::debug("pid {}: THP disable {:#x}, mlockall {:#x}, membarrier registrations {:#x}", task.host_pid,
             attributes.thp_disable(), attributes.mlockall(), attributes.membarrier());
  return attributes;
}

}  // namespace stasis::dump
