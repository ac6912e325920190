// POSIX timers come back in the leader with their ids: an injected
// prctl(PR_TIMER_CREATE_RESTORE_IDS) (Linux 6.17) makes timer_create take the id it is given,
// then each timer is created with its clock and notification and armed with the time it had
// left and its interval. After the threads exist (a timer may signal one of them).
// A timer's signal that was pending at the dump is not queued again as a plain signal: the
// kernel queues a timer's signal once (later expiries count as overruns), so the timer is
// armed to fire at once instead, which queues its own.
#pragma once

#include <signal.h>

#include "restore/remote.h"
#include "signals.pb.h"

namespace stasis::restore {

void restore_posix_timers(Remote& leader, const pb::SignalState& signals);

// True for the pending signal of one of the dumped POSIX timers (SI_TIMER, its id and signal).
bool is_posix_timer_signal(const siginfo_t& si, const pb::SignalState& signals);

}  // namespace stasis::restore
