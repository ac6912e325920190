#include "restore/core.h"

#include <elf.h>
#include <linux/sched.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <cstring>
#include <filesystem>
#include <span>
#include <string>

#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"

namespace stasis::restore {
namespace {

// The rseq(2) flag for unregistering, from <linux/rseq.h>.
constexpr int kRseqUnregister = 1;

user_regs_struct decode_regs(const pb::ThreadCore& core) {
  user_regs_struct regs;
  if (core.gpregs().size() != sizeof regs)
    fail("thread {}: saved registers are {} bytes, not {}", core.tid(), core.gpregs().size(), sizeof regs);
  std::memcpy(&regs, core.gpregs().data(), sizeof regs);
  // The dump already rewound an interrupted syscall for restart; keep the kernel from doing
  // it again on the way out of the ptrace stop.
  regs.orig_rax = static_cast<unsigned long long>(-1);
  return regs;
}

int wait_for(pid_t tid) {
  int status = 0;
  if (waitpid(tid, &status, __WALL) < 0) fail_errno(errno, "wait for thread {}", tid);
  if (WIFEXITED(status) || WIFSIGNALED(status)) fail("thread {} died during restore (status {:#x})", tid, status);
  return status;
}

}  // namespace

std::vector<RestoredThread> create_threads(Remote& leader, const RestorePlan& plan) {
  std::vector<RestoredThread> out;
  const auto& threads = plan.task.core.threads();
  for (int i = 1; i < threads.size(); ++i) {
    const pid_t tid = threads[i].tid();
    Remote cloner(leader.thread(), leader.host_pid(), leader.code_page());
    clone_args args{};
    args.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    const pid_t set_tid = tid;
    args.set_tid = cloner.put_scratch(&set_tid, sizeof set_tid);
    args.set_tid_size = 1;
    const uint64_t args_addr = cloner.append_scratch(&args, sizeof args);
    const long rc = cloner.syscall().call(SYS_clone3, args_addr, sizeof args);
    if (rc < 0) fail("pid {}: create thread {} (clone3 set_tid): {}", plan.task.pid(), tid, describe_errno(-rc));
    if (rc != tid) fail("pid {}: thread created as {} instead of {}", plan.task.pid(), rc, tid);
    pid_t host_tid = -1;
    for (const auto& event : cloner.syscall().events())
      if (event.event == PTRACE_EVENT_CLONE) host_tid = static_cast<pid_t>(event.message);
    if (host_tid < 0) fail("pid {}: thread {} was created but not reported to us", plan.task.pid(), tid);
    // Auto-attached by PTRACE_O_TRACECLONE: it stops before running a single instruction.
    auto created = ptrace::SeizedThread::adopt(host_tid);
    int status = created.wait_stop();
    if ((status >> 16) != PTRACE_EVENT_STOP)
      fail("pid {}: new thread {} stopped unexpectedly (status {:#x})", plan.task.pid(), tid, status);
    out.push_back({tid, host_tid, std::move(created)});
  }
  return out;
}

void restore_thread_state(Remote& r, const pb::ThreadCore& core) {
  if (core.has_rseq() && core.rseq().address() != 0) {
    r.call_checked("rseq", SYS_rseq, core.rseq().address(), core.rseq().length(), core.rseq().flags(),
                   core.rseq().signature());
  }
  r.call_checked("set_tid_address", SYS_set_tid_address, core.clear_child_tid());
  if (core.robust_list() != 0)
    r.call_checked("set_robust_list", SYS_set_robust_list, core.robust_list(), core.robust_list_len());
  if (!core.comm().empty()) {
    char name[16] = {};
    std::strncpy(name, core.comm().c_str(), sizeof name - 1);
    uint64_t addr = r.put_scratch(name, sizeof name);
    r.call_checked("prctl(PR_SET_NAME)", SYS_prctl, PR_SET_NAME, addr);
  }
}

void unregister_stub_rseq(Remote& r) {
  auto rseq = r.thread().get_rseq();
  if (rseq.address == 0) return;
  r.call_checked("rseq unregister", SYS_rseq, rseq.address, rseq.length, kRseqUnregister, rseq.signature);
}

void set_thread_cpu_state(ptrace::SeizedThread& thread, const pb::ThreadCore& core) {
  thread.set_regs(decode_regs(core));
  if (!core.xstate().empty())
    thread.set_xstate(std::as_bytes(std::span(core.xstate().data(), core.xstate().size())));
  thread.set_sigmask(core.blocked_signals());
}

void finish_leader(ptrace::SeizedThread& leader, uint64_t code_page, const pb::ThreadCore& core) {
  const pid_t tid = leader.tid();
  user_regs_struct regs = decode_regs(core);
  user_regs_struct call = regs;
  call.rip = code_page + kSyscallEntry;
  call.rax = SYS_munmap;
  call.rdi = code_page;
  call.rsi = kCodePageSize;
  leader.set_regs(call);
  // Run munmap up to its syscall-exit stop: the instruction after `syscall` is gone by then,
  // so the thread must never return into the page; it returns into the target's code instead.
  if (::ptrace(PTRACE_SYSCALL, tid, 0, 0) < 0) fail_errno(errno, "pid {}: PTRACE_SYSCALL", tid);
  for (int stops = 0; stops < 2;) {
    int status = wait_for(tid);
    if (WIFSTOPPED(status) && WSTOPSIG(status) == (SIGTRAP | 0x80)) {
      ++stops;
      if (stops == 2) break;
    } else if (WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_STOP) {
      // A leftover interrupt stop: just go on.
    } else if (WIFSTOPPED(status)) {
      fail("pid {}: unexpected signal {} while unmapping the restore code page", tid, WSTOPSIG(status));
    }
    if (::ptrace(PTRACE_SYSCALL, tid, 0, 0) < 0) fail_errno(errno, "pid {}: PTRACE_SYSCALL", tid);
  }
  user_regs_struct after = leader.get_regs();
  if (static_cast<long>(after.rax) != 0)
    fail("pid {}: unmap restore code page: {}", tid, describe_errno(static_cast<int>(-static_cast<long>(after.rax))));
  set_thread_cpu_state(leader, core);
}

void restore_thread_scheduling(pid_t host_tid, const pb::ThreadCore& core) {
  if (core.has_nice() && ::setpriority(PRIO_PROCESS, static_cast<id_t>(host_tid), core.nice()) < 0)
    fail_errno(errno, "tid {}: setpriority nice {}", host_tid, core.nice());
  if (core.cpu_affinity().size() == sizeof(cpu_set_t)) {
    cpu_set_t wanted, allowed, both;
    std::memcpy(&wanted, core.cpu_affinity().data(), sizeof wanted);
    if (::sched_getaffinity(host_tid, sizeof allowed, &allowed) < 0) fail_errno(errno, "tid {}: sched_getaffinity", host_tid);
    CPU_AND(&both, &wanted, &allowed);
    if (CPU_COUNT(&both) == 0)
      log::warn("tid {}: none of the CPUs it was bound to is available here; it may use all it is allowed", host_tid);
    else if (!CPU_EQUAL(&both, &allowed) && ::sched_setaffinity(host_tid, sizeof both, &both) < 0)
      fail_errno(errno, "tid {}: sched_setaffinity", host_tid);
  }
  const sched_param param{core.sched_priority()};
  if (::sched_setscheduler(host_tid, core.sched_policy(), &param) < 0)
    fail_errno(errno, "tid {}: sched_setscheduler policy {} priority {}", host_tid, core.sched_policy(),
               core.sched_priority());
}

const pb::ThreadCore& thread_core(const pb::TaskCore& core, pid_t tid) {
  for (const auto& t : core.threads())
    if (t.tid() == tid) return t;
  fail("pid {}: no saved state for thread {}", core.pid(), tid);
}

}  // namespace stasis::restore
