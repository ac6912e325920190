#include "dump/signals.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include <cstring>

#include "common/compat.h"
#include "common/error.h"
#include "common/log.h"
#include "common/proc.h"
#include "dump/posix_timers.h"

namespace stasis::dump {

namespace {

void add_siginfos(const std::vector<siginfo_t>& in, google::protobuf::RepeatedPtrField<pb::SigInfo>* out) {
  for (const siginfo_t& si : in) out->Add()->set_raw(&si, sizeof si);
}

}  // namespace

pb::SignalState collect_signals(Task& task, Injector& injector) {
  pb::SignalState state;
  ptrace::SeizedThread& leader = task.threads[0];
  // Only the signals with a handler or ignored are asked about (an injected call each), and
  // SIGCHLD, whose SA_NOCLDWAIT and SA_NOCLDSTOP matter even by default: the flags and mask
  // of any other default action change nothing, and restore sets it SIG_DFL.
  const auto status = proc::read_status(task.host_pid);
  const uint64_t asked = status.sig_caught | status.sig_ignored | (1ull << (SIGCHLD - 1));
  for (int sig = 1; sig <= 64; ++sig) {  // the kernel's _NSIG on x86_64
    if (sig == SIGKILL || sig == SIGSTOP || !(asked & (1ull << (sig - 1)))) continue;
    long rc = injector.call(leader, SYS_rt_sigaction, static_cast<uint64_t>(sig), 0, injector.scratch(), 8);
    if (rc == -EINVAL) continue;  // signals glibc reserves are still valid; this guards odd numbers only
    if (rc < 0) fail_errno(static_cast<int>(-rc), "tid {}: injected rt_sigaction({})", leader.tid(), sig);
    auto act = injector.read_scratch<compat::KernelSigaction>();
    if (act.handler == 0 && act.flags == 0 && act.mask == 0) continue;
    auto* a = state.add_actions();
    a->set_signo(static_cast<uint32_t>(sig));
    a->set_handler(act.handler);
    a->set_flags(act.flags);
    a->set_restorer(act.restorer);
    a->set_mask(act.mask);
  }
  add_siginfos(leader.peek_siginfo(true), state.mutable_shared_pending());

  for (size_t i = 0; i < task.threads.size(); ++i) {
    ptrace::SeizedThread& t = task.threads[i];
    auto* ts = state.add_threads();
    ts->set_tid(task.ns_tids[i]);
    add_siginfos(t.peek_siginfo(false), ts->mutable_pending());
    injector.call_checked(t, "sigaltstack", SYS_sigaltstack, 0, injector.scratch());
    auto ss = injector.read_scratch<stack_t>();
    ts->set_altstack_sp(reinterpret_cast<uint64_t>(ss.ss_sp));
    ts->set_altstack_size(ss.ss_size);
    ts->set_altstack_flags(ss.ss_flags);
  }

  for (int which : {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF}) {
    injector.call_checked(leader, "getitimer", SYS_getitimer, static_cast<uint64_t>(which), injector.scratch());
    auto it = injector.read_scratch<itimerval>();
    auto us = [](const timeval& tv) {
      return static_cast<uint64_t>(tv.tv_sec) * 1000000 + static_cast<uint64_t>(tv.tv_usec);
    };
    auto* e = state.add_itimers();
    e->set_which(static_cast<uint32_t>(which));
    e->set_interval_us(us(it.it_interval));
    e->set_value_us(us(it.it_value));
  }
  collect_posix_timers(task, injector, state.mutable_posix_timers());
  log::debug("pid {}: {} signal action(s), {} shared pending, {} POSIX timer(s)", task.host_pid,
             state.actions_size(), state.shared_pending_size(), state.posix_timers_size());
  return state;
}

}  // namespace stasis::dump
