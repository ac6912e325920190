#include "restore/posix_timers.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

#include <cstring>

#include "common/compat.h"
#include "common/error.h"
#include "common/timespec.h"

namespace stasis::restore {

namespace {

// Whether the signal of timer t was pending at the dump, in either queue.
bool signal_pending(const pb::PosixTimer& t, const pb::SignalState& signals) {
  auto of_timer = [&](const pb::SigInfo& info) {
    siginfo_t si{};
    if (info.raw().size() != sizeof si) return false;
    std::memcpy(&si, info.raw().data(), sizeof si);
    return si.si_code == SI_TIMER && si.si_timerid == t.id() && si.si_signo == t.signo();
  };
  for (const auto& info : signals.shared_pending())
    if (of_timer(info)) return true;
  for (const auto& thread : signals.threads())
    for (const auto& info : thread.pending())
      if (of_timer(info)) return true;
  return false;
}

void create_timer(Remote& r, const pb::PosixTimer& t, bool fire_now) {
  const std::string what = fmt::format("POSIX timer {}", t.id());
  sigevent sev;
  std::memset(&sev, 0, sizeof sev);
  sev.sigev_notify = t.notify();
  sev.sigev_signo = t.signo();
  sev.sigev_value.sival_ptr = reinterpret_cast<void*>(t.sigev_value());
  if (t.notify() == SIGEV_THREAD_ID) sev._sigev_un._tid = t.notify_tid();
  else if (t.notify() != SIGEV_SIGNAL && t.notify() != SIGEV_NONE) fail("{}: unknown notification {}", what, t.notify());
  // The id goes in where timer_create writes it: with RESTORE_IDS on, it is taken from there.
  const int32_t wanted = t.id();
  const uint64_t sev_addr = r.put_scratch(&sev, sizeof sev);
  const uint64_t id_addr = r.append_scratch(&wanted, sizeof wanted);
  const long rc = r.call(SYS_timer_create, static_cast<uint64_t>(t.clock()), sev_addr, id_addr);
  if (rc < 0) fail("{}: timer_create on clock {}: {}", what, t.clock(), describe_errno(static_cast<int>(-rc)));
  if (t.value_ns() == 0 && !fire_now) return;  // disarmed
  itimerspec its{to_timespec(t.interval_ns()), to_timespec(fire_now ? 1 : t.value_ns())};
  r.call_checked("timer_settime", SYS_timer_settime, static_cast<uint64_t>(t.id()), 0, r.put_scratch(&its, sizeof its),
                 0);
}

}  // namespace

void restore_posix_timers(Remote& leader, const pb::SignalState& signals) {
  if (signals.posix_timers().empty()) return;
  const long on = leader.call(SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_ON, 0, 0, 0);
  if (on < 0)
    fail("the job has {} POSIX timer(s), and this kernel cannot create a timer with a given id "
         "(prctl PR_TIMER_CREATE_RESTORE_IDS, Linux 6.17): {}",
         signals.posix_timers_size(), describe_errno(static_cast<int>(-on)));
  for (const auto& t : signals.posix_timers()) create_timer(leader, t, signal_pending(t, signals));
  leader.call_checked("prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)", SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS,
                      PR_TIMER_CREATE_RESTORE_IDS_OFF, 0, 0, 0);
}

bool is_posix_timer_signal(const siginfo_t& si, const pb::SignalState& signals) {
  if (si.si_code != SI_TIMER) return false;
  for (const auto& t : signals.posix_timers())
    if (t.id() == si.si_timerid && t.signo() == si.si_signo) return true;
  return false;
}

}  // namespace stasis::restore
