#include "dump/core.h"

#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "common/compat.h"
#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/ptrace.h"
#include "dump/seccomp.h"

namespace stasis::dump {

namespace {

using compat::kErestartNoHand;
using compat::kErestartNoIntr;
using compat::kErestartRestartBlock;
using compat::kErestartSys;

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

uint32_t parse_u32(const std::string& text, int base = 10) {
  return static_cast<uint32_t>(std::strtoul(text.c_str(), nullptr, base));
}

// Scheduling (policy, real-time priority, nice, CPU affinity), parent-death signal, timer slack,
// I/O priority.
void collect_thread_attributes(ptrace::SeizedThread& t, Injector& injector, pb::ThreadCore& tc) {
  const pid_t tid = t.tid();
  const int policy = ::sched_getscheduler(tid);
  sched_param param{};
  if (policy < 0 || ::sched_getparam(tid, &param) < 0) fail_errno(errno, "sched_getscheduler/sched_getparam");
  tc.set_sched_policy(policy);
  tc.set_sched_priority(param.sched_priority);
  errno = 0;
  const int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));  // a tid: that thread's
  if (errno != 0) fail_errno(errno, "getpriority");
  tc.set_nice(nice);
  injector.clear_scratch(sizeof(int));
  injector.call_checked(t, "prctl(PR_GET_PDEATHSIG)", SYS_prctl, PR_GET_PDEATHSIG, injector.scratch());
  tc.set_pdeathsig(injector.read_scratch<int>());
  tc.set_timerslack_ns(std::strtoull(read_file(fmt::format("/proc/{}/timerslack_ns", tid)).c_str(), nullptr, 10));
  const long ioprio = ::syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, tid);
  if (ioprio < 0) fail_errno(errno, "ioprio_get");
  tc.set_ioprio(static_cast<int32_t>(ioprio));
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  if (::sched_getaffinity(tid, sizeof cpus, &cpus) < 0) fail_errno(errno, "sched_getaffinity");
  tc.set_cpu_affinity(&cpus, sizeof cpus);
}

// Child subreaper and memory-deny-write-execute (injected), oom_score_adj, coredump_filter.
void collect_process_attributes(Task& task, Injector& injector, pb::TaskCore& core) {
  ptrace::SeizedThread& leader = task.threads[0];
  injector.clear_scratch(sizeof(int));
  injector.call_checked(leader, "prctl(PR_GET_CHILD_SUBREAPER)", SYS_prctl, PR_GET_CHILD_SUBREAPER, injector.scratch());
  core.set_child_subreaper(injector.read_scratch<int>() != 0);
  const long mdwe = injector.call(leader, SYS_prctl, PR_GET_MDWE, 0, 0, 0, 0);
  core.set_mdwe(mdwe > 0 ? static_cast<uint32_t>(mdwe) : 0);  // EINVAL before 6.3: off
  const auto proc_number = [&](const char* name, int base) {
    return std::strtoll(read_file(fmt::format("/proc/{}/{}", task.host_pid, name)).c_str(), nullptr, base);
  };
  core.set_oom_score_adj(static_cast<int32_t>(proc_number("oom_score_adj", 10)));
  core.set_coredump_filter(static_cast<uint32_t>(proc_number("coredump_filter", 16)));
}

pb::ThreadCore collect_thread(Task& task, size_t index, Injector& injector) {
  ptrace::SeizedThread& t = task.threads[index];
  pid_t tid = t.tid();
  return with_context(fmt::format("tid {}", tid), [&] {
    pb::ThreadCore tc;
    tc.set_tid(task.ns_tids[index]);
    user_regs_struct regs = t.get_regs();
    log::debug("tid {}: rip {:#x} rax {:#x} orig_rax {:#x}", tid, regs.rip, regs.rax, regs.orig_rax);
    RestartAdjustment adj = adjust_for_restart(regs, [tid](uint64_t address, timespec* out) {
      try {
        ptrace::read_memory(tid, address, std::as_writable_bytes(std::span(out, 1)));
        return true;
      } catch (const Error&) {
        return false;
      }
    });
    tc.set_gpregs(&regs, sizeof regs);
    tc.set_syscall_state(adj.state);
    tc.set_interrupted_syscall(adj.interrupted_syscall);
    std::vector<std::byte> xstate = t.get_xstate();
    tc.set_xstate(xstate.data(), xstate.size());
    tc.set_blocked_signals(t.get_sigmask());
    ptrace::RseqConfiguration rseq = t.get_rseq();
    auto* r = tc.mutable_rseq();
    r->set_address(rseq.address);
    r->set_length(rseq.length);
    r->set_flags(rseq.flags);
    r->set_signature(rseq.signature);

    injector.clear_scratch(8);
    injector.call_checked(t, "prctl(PR_GET_TID_ADDRESS)", SYS_prctl, PR_GET_TID_ADDRESS, injector.scratch());
    tc.set_clear_child_tid(injector.read_scratch<uint64_t>());

    void* head = nullptr;
    size_t len = 0;
    if (::syscall(SYS_get_robust_list, tid, &head, &len) < 0) fail_errno(errno, "get_robust_list");
    tc.set_robust_list(reinterpret_cast<uint64_t>(head));
    tc.set_robust_list_len(len);
    tc.set_comm(trim(read_file(fmt::format("/proc/{}/task/{}/comm", task.host_pid, tid))));
    *tc.mutable_seccomp() = collect_seccomp(tid, proc::read_task_status(task.host_pid, tid).seccomp);
    collect_thread_attributes(t, injector, tc);
    log::debug("tid {} (ns {}): rip {:#x} {} syscall {}", tid, task.ns_tids[index], regs.rip, adj.state,
               adj.interrupted_syscall);
    return tc;
  });
}

void collect_creds(Task& task, Injector& injector, const proc::Status& status, pb::Creds& creds) {
  // proc::Status leaves a missing line at zero: a status without these is not one we can trust.
  for (const char* key : {"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"})
    if (!status.fields.count(key)) fail("/proc/{}/status: no {} line", task.host_pid, key);
  creds.set_uid(status.uid[0]);
  creds.set_euid(status.uid[1]);
  creds.set_suid(status.uid[2]);
  creds.set_fsuid(status.uid[3]);
  creds.set_gid(status.gid[0]);
  creds.set_egid(status.gid[1]);
  creds.set_sgid(status.gid[2]);
  creds.set_fsgid(status.gid[3]);
  for (uint32_t g : status.groups) creds.add_groups(g);
  creds.set_cap_inheritable(status.cap_inh);
  creds.set_cap_permitted(status.cap_prm);
  creds.set_cap_effective(status.cap_eff);
  creds.set_cap_bounding(status.cap_bnd);
  creds.set_cap_ambient(status.cap_amb);
  creds.set_no_new_privs(status.no_new_privs == 1);
  creds.set_securebits(static_cast<uint32_t>(
      injector.call_checked(task.threads[0], "prctl(PR_GET_SECUREBITS)", SYS_prctl, PR_GET_SECUREBITS)));
}

}  // namespace

namespace {

// True when the registers of a restart_syscall hold the arguments of the clock_nanosleep it
// restarts: a clock id, flags 0 or TIMER_ABSTIME, and a readable, valid timespec.
bool restarts_clock_nanosleep(const user_regs_struct& regs, const TimespecReader& read_timespec) {
  if (!read_timespec || regs.rdi > 11 || (regs.rsi & ~uint64_t{TIMER_ABSTIME}) != 0) return false;
  timespec ts{};
  return read_timespec(regs.rdx, &ts) && ts.tv_sec >= 0 && ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000;
}

}  // namespace

RestartAdjustment adjust_for_restart(user_regs_struct& regs, const TimespecReader& read_timespec) {
  RestartAdjustment adj;
  auto orig = static_cast<long>(regs.orig_rax);
  auto rax = static_cast<long>(regs.rax);
  if (orig < 0) {
    adj.state = "running";
    return adj;
  }
  adj.interrupted_syscall = orig;
  if (rax == -kErestartRestartBlock && orig == SYS_restart_syscall && restarts_clock_nanosleep(regs, read_timespec)) {
    regs.orig_rax = SYS_clock_nanosleep;
    orig = SYS_clock_nanosleep;
    adj.interrupted_syscall = orig;
  }
  if (rax == -kErestartSys || rax == -kErestartNoIntr || rax == -kErestartNoHand ||
      (rax == -kErestartRestartBlock && (orig == SYS_nanosleep || orig == SYS_clock_nanosleep || orig == SYS_poll))) {
    // Back over the 2-byte `syscall` instruction with the call number in rax: the call runs
    // again on resume. A relative sleep, or poll's timeout, starts over with its full length
    // (a poll that no signal interrupted must not fail with EINTR: `script` gives up then).
    regs.rip -= 2;
    regs.rax = regs.orig_rax;
    adj.state = "syscall-restart";
  } else if (rax == -kErestartRestartBlock) {
    // The restart block lives in the kernel and is lost across a restore: report EINTR.
    regs.rax = static_cast<unsigned long long>(-static_cast<long>(EINTR));
    adj.state = "syscall-eintr";
  } else {
    // Stopped on the way out of a finished call: the result is already in rax.
    adj.state = "syscall-returned";
    adj.interrupted_syscall = -1;
  }
  return adj;
}

// /proc/PID/limits: a heading, then one line per resource in RLIMIT_* order, "Max cpu time
// unlimited unlimited seconds": the soft and hard limits are the two columns after the name
// (which has spaces), found by their position under the heading's "Soft Limit".
namespace {

std::vector<rlimit> read_limits(pid_t pid) {
  const std::string path = fmt::format("/proc/{}/limits", pid);
  std::istringstream in(read_file(path));
  std::string line;
  std::getline(in, line);
  const size_t soft_at = line.find("Soft Limit");
  if (soft_at == std::string::npos) fail("{}: no 'Soft Limit' heading", path);
  std::vector<rlimit> out;
  while (std::getline(in, line) && out.size() < RLIM_NLIMITS) {
    if (line.size() <= soft_at) fail("{}: short line '{}'", path, line);
    std::istringstream values(line.substr(soft_at));
    std::string soft, hard;
    values >> soft >> hard;
    const auto value = [&](const std::string& v) -> rlim_t {
      if (v == "unlimited") return RLIM_INFINITY;
      char* end = nullptr;
      const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0') fail("{}: '{}' is not a limit, in '{}'", path, v, line);
      return static_cast<rlim_t>(n);
    };
    out.push_back({value(soft), value(hard)});
  }
  if (out.size() != RLIM_NLIMITS) fail("{}: {} limits, expected {}", path, out.size(), RLIM_NLIMITS);
  return out;
}

}  // namespace

pb::TaskCore collect_core(Task& task, Injector& injector) {
  pid_t pid = task.host_pid;
  pb::TaskCore core;
  core.set_pid(task.ns_pid);
  for (size_t i = 0; i < task.threads.size(); ++i) *core.add_threads() = collect_thread(task, i, injector);

  // From /proc/PID/limits, which lists every limit in resource order: prlimit() on another
  // task with other credentials needs CAP_SYS_RESOURCE, which root lacks on some hosts (ours
  // among them), and asking the task itself costs an injected call per limit.
  const std::vector<rlimit> limits = read_limits(pid);
  for (size_t res = 0; res < limits.size(); ++res) {
    auto* r = core.add_rlimits();
    r->set_resource(static_cast<uint32_t>(res));
    r->set_cur(limits[res].rlim_cur);
    r->set_max(limits[res].rlim_max);
  }

  auto status = proc::read_status(pid);
  if (status.umask) core.set_umask(*status.umask);
  collect_creds(task, injector, status, *core.mutable_creds());
  core.set_personality(parse_u32(trim(read_file(fmt::format("/proc/{}/personality", pid))), 16));
  core.set_comm(trim(read_file(fmt::format("/proc/{}/comm", pid))));
  core.set_cwd(proc::read_link(fmt::format("/proc/{}/cwd", pid)));
  core.set_root(proc::read_link(fmt::format("/proc/{}/root", pid)));
  auto stat = proc::read_stat(pid);
  core.set_exit_signal(stat.exit_signal);
  core.set_nice(static_cast<int32_t>(stat.nice));
  core.set_dumpable(static_cast<uint32_t>(
      injector.call_checked(task.threads[0], "prctl(PR_GET_DUMPABLE)", SYS_prctl, PR_GET_DUMPABLE)));
  collect_process_attributes(task, injector, core);
  return core;
}

}  // namespace stasis::dump
