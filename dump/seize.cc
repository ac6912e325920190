#include "dump/seize.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <chrono>
#include <set>
#include <thread>

#include "common/error.h"
#include "common/fault.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/proc.h"

namespace stasis::dump {

namespace {

constexpr int kMaxRounds = 100;

bool thread_exists(pid_t tid) { return std::filesystem::exists(fmt::format("/proc/{}", tid)); }

// Reads the thread's status: refuses a thread someone else traces, and says whether it runs
// under seccomp.
struct ThreadFacts {
  bool seccomp = false;
};
ThreadFacts check_thread(pid_t tid) {
  proc::Status status;
  try {
    status = proc::read_status(tid);
  } catch (const Error&) {
    return {};  // gone: the seize says so
  }
  if (status.tracer_pid != 0)
    fail("thread {} is already traced by pid {} (a debugger or another dump?)", tid, status.tracer_pid);
  return {status.seccomp != 0};
}

// Seizes a thread. One under seccomp gets PTRACE_O_SUSPEND_SECCOMP: the system calls we inject
// must not meet its filters, which could refuse them or kill the job.
ptrace::SeizedThread seize_thread(pid_t tid) {
  const ThreadFacts facts = check_thread(tid);
  if (!facts.seccomp) return ptrace::SeizedThread::seize(tid, seize_options());
  try {
    return ptrace::SeizedThread::seize(tid, seize_options() | PTRACE_O_SUSPEND_SECCOMP);
  } catch (const Error& e) {
    throw Error(fmt::format("thread {} runs under seccomp, and suspending it for the dump failed ({}); it needs "
                            "CAP_SYS_ADMIN and a kernel with CONFIG_CHECKPOINT_RESTORE",
                            tid, e.what()));
  }
}

// State T in /proc: in a group-stop (SIGSTOP, SIGTSTP, ...) and not traced.
bool stopped_by_job_control(pid_t tid) {
  try {
    return proc::read_stat(tid).state == 'T';
  } catch (const Error&) {
    return false;  // gone: the seize says so
  }
}

// A frozen thread shows state D whatever it was doing; one frozen in its group-stop still
// waits in do_signal_stop.
bool in_group_stop(pid_t tid) {
  try {
    return read_file(fmt::format("/proc/{}/wchan", tid)).starts_with("do_signal_stop");
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

unsigned long seize_options() { return PTRACE_O_TRACESYSGOOD; }

void wait_interrupt_stop(ptrace::SeizedThread& thread) {
  int status = thread.wait_stop();
  thread.note_interrupt_stop(status);
  if (WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_STOP) return;
  if (WIFSTOPPED(status))
    throw Error(fmt::format("thread {}: expected the interrupt stop, got a stop for signal {} ({}); retry the dump",
                            thread.tid(), WSTOPSIG(status), strsignal(WSTOPSIG(status))));
  fail("thread {}: unexpected wait status {:#x} while seizing", thread.tid(), status);
}

std::vector<ptrace::SeizedThread> seize_process(pid_t pid) {
  if (!std::filesystem::exists(fmt::format("/proc/{}", pid))) fail("no process with pid {}", pid);
  if (pid == ::getpid()) fail("pid {} is stasis itself", pid);
  std::vector<ptrace::SeizedThread> threads;
  std::set<pid_t> seen;
  for (int round = 0;; ++round) {
    if (round == kMaxRounds) fail("pid {}: the thread list did not settle after {} rounds", pid, kMaxRounds);
    std::vector<pid_t> tids = proc::list_tasks(pid);
    bool added = false;
    for (pid_t tid : tids) {
      if (seen.count(tid)) continue;
      try {
        auto t = seize_thread(tid);
        t.interrupt_and_wait();
        threads.push_back(std::move(t));
      } catch (const Error&) {
        if (!thread_exists(tid)) continue;  // it exited while we looked: not part of the job any more
        throw;
      }
      seen.insert(tid);
      added = true;
    }
    if (!added) break;
  }
  if (threads.empty() || threads.front().tid() != pid) fail("pid {}: its main thread could not be seized", pid);
  log::debug("seized {} thread(s) of pid {}", threads.size(), pid);
  return threads;
}

std::vector<ptrace::SeizedThread> seize_subtree(pid_t pid) {
  std::vector<ptrace::SeizedThread> threads = seize_process(pid);
  std::set<pid_t> processes{pid};
  std::vector<pid_t> to_walk{pid};
  while (!to_walk.empty()) {
    const pid_t parent = to_walk.back();
    to_walk.pop_back();
    // Stopped: the children read now are all it will have until we let it go.
    std::set<pid_t> children;
    for (pid_t tid : proc::list_tasks(parent)) {
      try {
        for (pid_t c : proc::list_children(parent, tid)) children.insert(c);
      } catch (const Error&) {
      }
    }
    for (pid_t child : children) {
      if (processes.count(child)) continue;
      proc::Stat st;
      try {
        st = proc::read_stat(child);
      } catch (const Error&) {
        continue;  // reaped meanwhile
      }
      if (st.state == 'Z' || st.state == 'X') continue;  // a zombie: the tree checks say what to do
      std::vector<ptrace::SeizedThread> more;
      try {
        more = seize_process(child);
      } catch (const Error&) {
        if (!thread_exists(child)) continue;
        throw;
      }
      for (auto& t : more) threads.push_back(std::move(t));
      processes.insert(child);
      to_walk.push_back(child);
    }
  }
  log::debug("seized {} process(es) ({} threads) under pid {}", processes.size(), threads.size(), pid);
  return threads;
}

std::vector<ptrace::SeizedThread> seize_cgroup(const Cgroup& cgroup, Guardian& guardian) {
  // Declared before the freeze so that on error the cgroup is thawed first (the interrupted
  // threads then reach their stops) and the threads are detached after.
  std::vector<ptrace::SeizedThread> threads;
  std::set<pid_t> seen;
  // A thread stopped by job control is seized before the freeze: PTRACE_SEIZE waits until it
  // has moved from its group-stop to a ptrace-stop, which a thread frozen by the cgroup v1
  // freezer never makes, so seizing it frozen would hang.
  for (pid_t tid : cgroup.threads()) {
    if (!stopped_by_job_control(tid)) continue;
    auto t = seize_thread(tid);
    t.interrupt_and_wait();
    threads.push_back(std::move(t));
    seen.insert(tid);
  }
  // Armed before the freeze and disarmed after the thaw: should we die in between, it thaws.
  guardian.arm();
  {
    CgroupFreeze freeze(cgroup);
    for (pid_t tid : cgroup.threads()) {
      if (seen.count(tid)) continue;
      if (in_group_stop(tid)) throw SeizeBusy(fmt::format("thread {} was stopped by job control meanwhile", tid));
      auto t = seize_thread(tid);
      // A frozen task cannot reach a ptrace-stop: ask for it now, wait after the thaw.
      if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) < 0) fail_errno(errno, "PTRACE_INTERRUPT tid {}", tid);
      threads.push_back(std::move(t));
      seen.insert(tid);
    }
    if (fault_active("dump-kill-while-frozen")) ::raise(SIGKILL);  // tests: the guardian acts
  }  // thawed here
  guardian.disarm();
  for (auto& t : threads) {
    if (t.stopped()) continue;  // seized before the freeze
    // A thread in uninterruptible sleep that does not stop is a vfork parent waiting for its
    // child, which we hold: give up this round (threads is let go on the way out).
    try {
      const int status = t.wait_stop(std::chrono::milliseconds(300));
      if (!(WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_STOP)) {
        if (WIFSTOPPED(status))
          throw Error(fmt::format("thread {}: expected the interrupt stop, got a stop for signal {} ({}); retry the "
                                  "dump",
                                  t.tid(), WSTOPSIG(status), strsignal(WSTOPSIG(status))));
        fail("thread {}: unexpected wait status {:#x} while seizing", t.tid(), status);
      }
      t.note_interrupt_stop(status);
    } catch (const SeizeBusy&) {
      throw;
    } catch (const Error&) {
      proc::Stat st;
      try {
        st = proc::read_stat(t.tid());
      } catch (const Error&) {
        throw;
      }
      if (st.state == 'D') {
        // Let go of the stopped ones first (the vfork child among them), so that the waiting
        // parents can reach their stops, and be let go in turn, on the way out.
        for (auto& other : threads) {
          try {
            if (!other.stopped() && &other != &t) other.wait_stop(std::chrono::milliseconds(100));
            if (other.stopped()) other.detach();
          } catch (const Error& e) {
            log::debug("{}", e.what());  // another waiting parent: let go on the way out
          }
        }
        throw SeizeBusy(fmt::format("thread {} waits for a child it vforked", t.tid()));
      }
      wait_interrupt_stop(t);
    }
  }
  // Stragglers: anything that appeared anyway (it cannot while frozen, but be sure).
  for (int round = 0;; ++round) {
    if (round == kMaxRounds) fail("cgroup thread list did not settle after {} rounds", kMaxRounds);
    bool added = false;
    for (pid_t tid : cgroup.threads()) {
      if (seen.count(tid)) continue;
      try {
        auto t = seize_thread(tid);
        t.interrupt_and_wait();
        threads.push_back(std::move(t));
      } catch (const Error&) {
        if (!thread_exists(tid)) continue;
        throw;
      }
      seen.insert(tid);
      added = true;
    }
    if (!added) break;
  }
  log::debug("seized {} thread(s) in the cgroup", threads.size());
  return threads;
}

}  // namespace stasis::dump
