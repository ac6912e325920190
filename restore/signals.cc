#include "restore/signals.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>

#include "common/compat.h"
#include "common/error.h"
#include "restore/posix_timers.h"

namespace stasis::restore {
namespace {

constexpr int kLastSignal = 64;  // the kernel's _NSIG on x86_64

siginfo_t decode_siginfo(const pb::SigInfo& info) {
  siginfo_t si;
  std::memset(&si, 0, sizeof si);
  if (info.raw().size() != sizeof si) fail("pending signal record has {} bytes, not {}", info.raw().size(), sizeof si);
  std::memcpy(&si, info.raw().data(), sizeof si);
  return si;
}

}  // namespace

void install_signal_actions(const pb::SignalState& signals) {
  // The stub inherited what its makers had (the restorer's own SIGINT/SIGTERM handlers, whose
  // addresses mean nothing in the job): every signal the dump did not record is SIG_DFL.
  compat::KernelSigaction actions[kLastSignal + 1] = {};
  for (const auto& action : signals.actions()) {
    if (action.signo() < 1 || action.signo() > kLastSignal) fail("signal action for signal {}", action.signo());
    actions[action.signo()] = {action.handler(), action.flags(), action.restorer(), action.mask()};
  }
  // SIGTRAP stays SIG_DFL until the batches of injected calls that end in a trap are done
  // (restore/code_page.h); restore_trap_action puts the dumped one.
  actions[SIGTRAP] = {};
  for (int sig = 1; sig <= kLastSignal; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    if (syscall(SYS_rt_sigaction, sig, &actions[sig], nullptr, sizeof(uint64_t)) < 0)
      fail_errno(errno, "rt_sigaction signal {}", sig);
  }
}

void restore_trap_action(Remote& leader, const pb::SignalState& signals) {
  for (const auto& action : signals.actions()) {
    if (action.signo() != SIGTRAP) continue;
    const compat::KernelSigaction trap{action.handler(), action.flags(), action.restorer(), action.mask()};
    if (trap.handler == 0 && trap.flags == 0 && trap.mask == 0) return;  // SIG_DFL, as it is
    const uint64_t addr = leader.put_scratch(&trap, sizeof trap);
    leader.call_checked("rt_sigaction(SIGTRAP)", SYS_rt_sigaction, SIGTRAP, addr, 0, sizeof(uint64_t));
  }
}

void restore_thread_signals(Remote& thread, const pb::SignalState& signals, pid_t tgid, pid_t tid) {
  for (const auto& ts : signals.threads()) {
    if (ts.tid() != tid) continue;
    if (!(ts.altstack_flags() & SS_DISABLE)) {
      stack_t ss{reinterpret_cast<void*>(ts.altstack_sp()), ts.altstack_flags() & ~SS_ONSTACK,
                 static_cast<size_t>(ts.altstack_size())};
      uint64_t addr = thread.put_scratch(&ss, sizeof ss);
      thread.call_checked("sigaltstack", SYS_sigaltstack, addr, 0);
    }
    // Queued by the thread itself: the kernel refuses kernel-style si_codes from other tasks.
    for (const auto& pending : ts.pending()) {
      siginfo_t si = decode_siginfo(pending);
      if (is_posix_timer_signal(si, signals)) continue;  // its timer queues it again
      uint64_t addr = thread.put_scratch(&si, sizeof si);
      thread.call_checked("rt_tgsigqueueinfo", SYS_rt_tgsigqueueinfo, tgid, tid, si.si_signo, addr);
    }
  }
}

void restore_process_signals(Remote& leader, const pb::SignalState& signals, pid_t tgid) {
  for (const auto& pending : signals.shared_pending()) {
    siginfo_t si = decode_siginfo(pending);
    if (is_posix_timer_signal(si, signals)) continue;  // its timer queues it again
    uint64_t addr = leader.put_scratch(&si, sizeof si);
    leader.call_checked("rt_sigqueueinfo", SYS_rt_sigqueueinfo, tgid, si.si_signo, addr);
  }
  for (const auto& timer : signals.itimers()) {
    if (timer.value_us() == 0 && timer.interval_us() == 0) continue;
    itimerval value{};
    value.it_interval.tv_sec = static_cast<time_t>(timer.interval_us() / 1000000);
    value.it_interval.tv_usec = static_cast<suseconds_t>(timer.interval_us() % 1000000);
    // Value 0 with an interval: ITIMER_VIRTUAL and ITIMER_PROF were set so (disarmed, the
    // interval kept; setitimer keeps it again). ITIMER_REAL cannot be: setitimer forgets its
    // interval when disarming it; it fired and re-arms when its SIGALRM is taken. Armed to
    // fire at once, it gets there again (its SIGALRM, pending or not, comes back).
    uint64_t left = timer.value_us() || timer.which() != ITIMER_REAL ? timer.value_us() : 1;
    value.it_value.tv_sec = static_cast<time_t>(left / 1000000);
    value.it_value.tv_usec = static_cast<suseconds_t>(left % 1000000);
    uint64_t addr = leader.put_scratch(&value, sizeof value);
    leader.call_checked("setitimer", SYS_setitimer, timer.which(), addr, 0);
  }
}

}  // namespace stasis::restore
