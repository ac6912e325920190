// Seccomp: each thread's mode and filters come back after every thread exists and before the
// credentials are restored (installing a filter needs CAP_SYS_ADMIN or no_new_privs, and the
// stub still has the first). The threads are seized with PTRACE_O_SUSPEND_SECCOMP, so the
// rest of the restore's injected calls pass the filters; they take effect at the detach.
#pragma once

#include <cstdint>
#include <vector>

#include "core.pb.h"
#include "restore/core.h"
#include "restore/remote.h"

namespace stasis::restore {

// True when some thread of the image runs under seccomp.
bool uses_seccomp(const pb::TaskCore& core);

// When every thread has the same filters, they are installed once, in the leader, with
// SECCOMP_FILTER_FLAG_TSYNC: the threads then share them as they did (a later TSYNC by the job
// still works). Otherwise each thread gets its own. Strict mode is set per thread.
void restore_seccomp(Remote& leader, std::vector<RestoredThread>& threads, const pb::TaskCore& core);

}  // namespace stasis::restore
