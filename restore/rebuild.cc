#include "restore/rebuild.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <latch>
#include <mutex>
#include <set>
#include <thread>

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

namespace {

std::vector<ProcessRestore> seize_some(const RestoreTree& tree, const std::vector<StubReport>& reports,
                                       const std::map<pid_t, pid_t>& host_pids, const std::vector<size_t>& which) {
  std::vector<ProcessRestore> out(which.size());
  for (size_t k = 0; k < which.size(); ++k) {
    const RestorePlan& plan = tree.processes[which[k]];
    ProcessRestore& p = out[k];
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

// Members join their groups; the leaders (or their stand-ins) made theirs in their stubs.
void join_groups(std::vector<ProcessRestore>& processes, const std::set<pid_t>& groups) {
  for (auto& p : processes) {
    const pb::TaskEntry& e = p.plan->task.entry;
    if (e.sid() == e.pid() || e.pgid() == e.pid() || !groups.count(e.pgid())) continue;
    with_context(fmt::format("restore pid {} (host pid {})", e.pid(), p.host_pid), [&] {
      Remote remote(*p.leader, p.host_pid, p.code_page);
      remote.call_checked(fmt::format("setpgid(0, {})", e.pgid()), SYS_setpgid, 0, static_cast<uint64_t>(e.pgid()));
      remote.finish();
    });
  }
}

// The groups members can join: those of the processes and zombies of the tree, and those
// stand-ins remake for leaders that had exited.
std::set<pid_t> joinable_groups(const RestoreTree& tree) {
  std::set<pid_t> out;
  for (const auto& p : tree.processes) {
    out.insert(p.task.pid());
    out.insert(p.task.entry.group_stand_ins().begin(), p.task.entry.group_stand_ins().end());
  }
  for (const auto& z : tree.zombies) out.insert(z.entry.pid());
  return out;
}

// Kills and reaps, from inside the process, its stand-ins for group leaders (restore/stub.cc),
// once every member has joined their groups.
void remove_group_stand_ins(Remote& remote, const pb::TaskEntry& entry) {
  for (pid_t pgid : entry.group_stand_ins()) {
    remote.call_checked(fmt::format("kill(stand-in for the leader of process group {}, SIGKILL)", pgid), SYS_kill,
                        static_cast<uint64_t>(pgid), SIGKILL);
    remote.call_checked(fmt::format("wait4(stand-in for the leader of process group {})", pgid), SYS_wait4,
                        static_cast<uint64_t>(pgid), 0, __WALL, 0);
  }
}

}  // namespace

void rebuild_process(ProcessRestore& p, const std::function<void()>& check_interrupt) {
  const RestorePlan& plan = *p.plan;
  const pid_t pid = plan.task.pid();
  const pid_t host_pid = p.host_pid;
  with_context(fmt::format("restore pid {} (host pid {})", pid, host_pid), [&] {
    Remote remote(*p.leader, host_pid, p.code_page);
    remove_group_stand_ins(remote, plan.task.entry);
    unregister_stub_rseq(remote);
    const auto memory_at = std::chrono::steady_clock::now();
    p.memory = restore_memory(remote, plan);
    p.memory_ms = ms_since(memory_at);
    restore_trap_action(remote, plan.signals());  // the last batch has trapped
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
    // Stopped by job control at the dump: a SIGSTOP queued while it is held is taken on its
    // way out of the ptrace-stop, before any instruction of its own (its parent is told of
    // the stop anew, as after any SIGSTOP). A failed restore kills it all the same.
    if (plan.task.entry.stop_signal() != 0 && ::kill(host_pid, SIGSTOP) < 0)
      fail_errno(errno, "kill(SIGSTOP) to stop it again, as it was at the dump");
  });
}

void let_go(std::vector<ProcessRestore>& processes) {
  for (auto& p : processes) {
    for (auto& t : p.threads) t.thread.detach();
    if (p.leader) p.leader->detach();
  }
}

std::vector<ProcessRestore> rebuild_tree(const RestoreTree& tree, const std::vector<StubReport>& reports,
                                         const std::map<pid_t, pid_t>& host_pids, unsigned workers,
                                         const std::function<void()>& check_interrupt,
                                         const std::function<void()>& whole) {
  const std::set<pid_t> groups = joinable_groups(tree);
  workers = std::max(1u, std::min<unsigned>(workers, static_cast<unsigned>(tree.processes.size())));
  std::vector<std::vector<size_t>> shares(workers);
  for (size_t i = 0; i < tree.processes.size(); ++i) shares[i % workers].push_back(i);
  std::vector<std::vector<ProcessRestore>> done(workers);
  // Every member joins its group before any process is rebuilt: the rebuild removes the
  // stand-ins for exited group leaders, whose groups would go with them.
  std::latch joined(workers);
  const auto rebuild_share = [&](unsigned w) {
    try {
      done[w] = seize_some(tree, reports, host_pids, shares[w]);
      join_groups(done[w], groups);
    } catch (...) {
      joined.count_down();
      throw;
    }
    joined.arrive_and_wait();
    for (auto& p : done[w]) rebuild_process(p, check_interrupt);
  };
  const auto collect = [&] {
    std::vector<ProcessRestore> out;
    for (auto& d : done)
      for (auto& p : d) out.push_back(std::move(p));
    return out;
  };
  if (workers == 1) {  // on this thread, as a single process always was
    rebuild_share(0);
    whole();
    let_go(done[0]);
    return collect();
  }
  // Each worker: rebuild its share, report, wait for the verdict, then let go (or, on
  // failure, drop its links as its SeizedThreads go).
  std::mutex mutex;
  std::condition_variable changed;
  unsigned finished = 0;
  int verdict = 0;  // 0: waiting, 1: let go, -1: give up
  std::vector<std::exception_ptr> errors(workers);
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < workers; ++w)
    threads.emplace_back([&, w] {
      try {
        rebuild_share(w);
      } catch (...) {
        errors[w] = std::current_exception();
      }
      std::unique_lock lock(mutex);
      ++finished;
      changed.notify_all();
      changed.wait(lock, [&] { return verdict != 0; });
      if (verdict > 0 && !errors[w]) {
        lock.unlock();
        let_go(done[w]);
      } else {
        done[w].clear();  // detached (or gone with the container) from the thread that seized them
      }
    });
  std::exception_ptr first;
  {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return finished == workers; });
    for (auto& e : errors)
      if (e && !first) first = e;
  }
  if (!first) {
    try {
      whole();
    } catch (...) {
      first = std::current_exception();
    }
  }
  {
    std::lock_guard lock(mutex);
    verdict = first ? -1 : 1;
  }
  changed.notify_all();
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
  return collect();
}

}  // namespace stasis::restore
