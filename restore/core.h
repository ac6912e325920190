// Threads and CPU state: creating the threads with their original TIDs (clone3 set_tid,
// injected from the leader), then per thread rseq, tid address, robust list, name, registers,
// XSAVE state and signal mask. The last step unmaps our code page and lets the process go.
#pragma once

#include <sys/types.h>

#include <memory>
#include <vector>

#include "common/ptrace.h"
#include "restore/plan.h"
#include "restore/remote.h"

namespace stasis::restore {

struct RestoredThread {
  pid_t ns_tid;
  pid_t host_tid;
  ptrace::SeizedThread thread;
};

// Creates threads[1..] of the image in the process whose leader is `leader` (already rebuilt
// memory), seizes each, and returns them (the leader not included).
std::vector<RestoredThread> create_threads(Remote& leader, const RestorePlan& plan);

// The saved state of namespace thread tid; throws when the image has none.
const pb::ThreadCore& thread_core(const pb::TaskCore& core, pid_t tid);

// Per-thread kernel state that only the thread can set on itself.
void restore_thread_state(Remote& thread, const pb::ThreadCore& core);

// Unregisters the rseq area the stub inherited from us (it is about to be unmapped).
void unregister_stub_rseq(Remote& stub);

// Policy, real-time priority, nice and CPU affinity of a thread, set from outside (we are
// privileged). The affinity is cut to the CPUs the thread may use here (its cpuset, this
// host's CPUs); when none of its CPUs is left it keeps all it may use, with a warning.
void restore_thread_scheduling(pid_t host_tid, const pb::ThreadCore& core);

// Sets the final registers, XSAVE state and signal mask of a non-leader thread.
void set_thread_cpu_state(ptrace::SeizedThread& thread, const pb::ThreadCore& core);

// Last: unmaps the code page from the leader (stopping at the syscall exit), then sets the
// leader's final CPU state. After this, detaching the threads lets the process run.
void finish_leader(ptrace::SeizedThread& leader, uint64_t code_page, const pb::ThreadCore& core);

}  // namespace stasis::restore
