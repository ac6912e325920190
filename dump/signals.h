// signals-<nspid>.img: handlers (injected rt_sigaction), pending queues (PTRACE_PEEKSIGINFO),
// alternate stacks (injected sigaltstack), interval timers (injected getitimer) and POSIX
// timers (posix_timers.h).
#pragma once

#include "dump/inject.h"
#include "dump/task.h"
#include "signals.pb.h"

namespace stasis::dump {

pb::SignalState collect_signals(Task& task, Injector& injector);

}  // namespace stasis::dump
