// POSIX timers come back in the leader with their ids: an injected
// prctl(PR_TIMER_CREATE_RESTORE_IDS) (Linux 6.17) makes timer_create take the id it is given,
// then each timer is created with its clock and notification and armed with the time it had
// left and its interval. After the threads exist (a timer may signal one of them).
#pragma once

#include "restore/remote.h"
#include "signals.pb.h"

namespace stasis::restore {

void restore_posix_timers(Remote& leader, const pb::SignalState& signals);

}  // namespace stasis::restore
