// Signal state. Handlers are installed by the stub on itself (all signals blocked, so none can
// run before the target's code is in place); pending signals, alternate stacks and interval
// timers are injected once the target's memory exists; masks are set last, per thread.
#pragma once

#include <sys/types.h>

#include "restore/remote.h"
#include "signals.pb.h"

namespace stasis::restore {

// In the stub: every signal's action as dumped, SIG_DFL for those the dump did not record,
// and for SIGTRAP until restore_trap_action.
void install_signal_actions(const pb::SignalState& signals);
// Injected into the leader once its memory is in: SIGTRAP's action as dumped.
void restore_trap_action(Remote& leader, const pb::SignalState& signals);

// Injected into each thread (after its memory and before its final registers).
void restore_thread_signals(Remote& thread, const pb::SignalState& signals, pid_t tgid, pid_t tid);
// Injected into the leader: the process-wide queue and the interval timers.
void restore_process_signals(Remote& leader, const pb::SignalState& signals, pid_t tgid);

}  // namespace stasis::restore
