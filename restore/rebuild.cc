#include "restore/rebuild.h"

#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <chrono>

#include "common/error.h"
#include "common/fault.h"
#include "common/log.h"
#include "restore/creds.h"
#include "restore/file_locks.h"
#include "restore/posix_timers.h"
#include "restore/process.h"
#include "restore/remote.h"
#include "restore/seccomp.h"
#include "restore/signals.h"

namespace stasis::restore {

namespace {

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

std::vector<ProcessRestore> seize_stubs(const RestoreTree& tree, const std::vector<StubReport>& reports,
                                        const std::map<pid_t, pid_t>& host_pids) {
  std::vector<ProcessRestore> out(tree.processes.size());
  for (size_t i = 0; i < tree.processes.size(); ++i) {
    const RestorePlan& plan = tree.processes[i];
    ProcessRestore& p = out[i];
    p.plan = &plan;
    auto host = host_pids.find(plan.task.pid());
    if (host == host_pids.end()) fail("restore pid {}: its stub was not found in the container", plan.task.pid());
    p.host_pid = host->second;
    for (const auto& r : reports)
      if (r.pid == plan.task.pid()) p.code_page = r.code_page;
    if (p.code_page == 0) fail("restore pid {}: its stub did not report", plan.task.pid());
    // Under seccomp, the filters come back before we are done: our injected calls must pass
    // them (the threads created from the leader inherit the option).
    const unsigned long suspend = uses_seccomp(plan.task.core) ? PTRACE_O_SUSPEND_SECCOMP : 0;
    p.leader.emplace(ptrace::SeizedThread::seize(p.host_pid, PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | suspend));
    p.leader->interrupt_and_wait();
  }
  return out;
}

void set_process_groups(std::vector<ProcessRestore>& processes, const std::vector<Zombie>& zombies) {
  std::map<pid_t, bool> in_tree;
  for (const auto& p : processes) in_tree[p.plan->task.pid()] = true;
  for (const auto& z : zombies) in_tree[z.entry.pid()] = true;
  for (int pass = 0; pass < 2; ++pass) {
    for (auto& p : processes) {
      const pb::TaskEntry& e = p.plan->task.entry;
      const bool leader = e.pgid() == e.pid();
      // A session leader is its group's leader already; a group whose leader is not in the
      // tree is the one the process inherited (dump/tree.h checks it).
      if (e.sid() == e.pid() || !in_tree.count(e.pgid()) || leader != (pass == 0)) continue;
      with_context(fmt::format("restore pid {} (host pid {})", e.pid(), p.host_pid), [&] {
        Remote remote(*p.leader, p.host_pid, p.code_page);
        remote.call_checked(fmt::format("setpgid(0, {})", e.pgid()), SYS_setpgid, 0, static_cast<uint64_t>(e.pgid()));
        remote.finish();
      });
    }
  }
}

void rebuild_process(ProcessRestore& p, const std::function<void()>& check_interrupt) {
  const RestorePlan& plan = *p.plan;
  const pid_t pid = plan.task.pid();
  const pid_t host_pid = p.host_pid;
  with_context(fmt::format("restore pid {} (host pid {})", pid, host_pid), [&] {
    Remote remote(*p.leader, host_pid, p.code_page);
    unregister_stub_rseq(remote);
    const auto memory_at = std::chrono::steady_clock::now();
    p.memory = restore_memory(remote, plan);
    p.memory_ms = ms_since(memory_at);
    fault_point("restore-after-memory");
    check_interrupt();
    p.threads = create_threads(remote, plan);
    restore_seccomp(remote, p.threads, plan.task.core);
    for (auto& t : p.threads) {
      const pb::ThreadCore& core = thread_core(plan.task.core, t.ns_tid);
      Remote thread_remote(t.thread, host_pid, p.code_page);
      restore_thread_state(thread_remote, core);
      restore_thread_signals(thread_remote, plan.task.signals, pid, t.ns_tid);
      restore_creds(thread_remote, plan.task.core.creds());
      restore_thread_attributes(thread_remote, t.host_tid, core);
      thread_remote.finish();
      set_thread_cpu_state(t.thread, core);
    }
    restore_thread_state(remote, plan.task.core.threads(0));
    restore_thread_signals(remote, plan.task.signals, pid, pid);
    restore_process_signals(remote, plan.task.signals, pid);
    restore_posix_timers(remote, plan.task.signals);
    restore_file_locks(remote, plan.task.fds);
    restore_creds(remote, plan.task.core.creds());
    restore_dumpable(remote, plan.task.core);
    restore_thread_attributes(remote, host_pid, plan.task.core.threads(0));
    restore_late_process_attributes(remote, host_pid, plan.task.core);
    remote.call_checked("close (the stub's end of the control pipe)", SYS_close,
                        static_cast<uint64_t>(plan.control_fd()));
    remote.finish();
    fault_point("restore-before-finish");
    check_interrupt();
    finish_leader(*p.leader, p.code_page, plan.task.core.threads(0));
    for (const auto& t : p.threads) restore_thread_scheduling(t.host_tid, thread_core(plan.task.core, t.ns_tid));
    restore_thread_scheduling(host_pid, plan.task.core.threads(0));
  });
}

void let_go(std::vector<ProcessRestore>& processes) {
  for (auto& p : processes) {
    for (auto& t : p.threads) t.thread.detach();
    if (p.leader) p.leader->detach();
  }
}

}  // namespace stasis::restore
