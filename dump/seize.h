// Stopping the job: every thread PTRACE_SEIZEd and held in a ptrace-stop, so nothing of the
// job runs until the dump ends. Two ways in:
//  - a container: freeze its cgroup, seize + interrupt every thread while frozen (nothing can
//    fork or spawn behind our back), thaw so they reach the ptrace-stop, then catch stragglers;
//  - --pid: ptrace alone (seize + interrupt each thread, re-reading /proc/PID/task until the
//    set is stable), so the process keeps its own cgroup and limits.
// On any error the SeizedThread destructors detach and the job runs on untouched. Should the
// dumper die while the cgroup is frozen, a guardian process puts it back (dump/guardian.h).
#pragma once

#include <sys/types.h>

#include <vector>

#include "common/cgroup.h"
#include "common/error.h"
#include "common/ptrace.h"
#include "dump/guardian.h"

namespace stasis::dump {

// The options every seized thread gets.
unsigned long seize_options();

// ptrace only. Threads are returned leader first.
std::vector<ptrace::SeizedThread> seize_process(pid_t pid);

// ptrace only: pid and every descendant, seized process by process from the root down and
// walked again until no new child appears (one forked during the walk is caught: its parent
// is seized before its children are read, and then cannot fork any more).
std::vector<ptrace::SeizedThread> seize_subtree(pid_t pid);

// A thread that cannot reach its stop while we hold another: a parent waiting in vfork() for
// a child that we stopped before it could exec. Letting everything go for a moment and
// seizing again gets past it.
struct SeizeBusy : Error {
  using Error::Error;
};

// Through the cgroup freezer: every thread of every process in cgroup. The cgroup is thawed
// again before returning (the threads stay in their ptrace-stops), and on error; guardian is
// armed meanwhile.
std::vector<ptrace::SeizedThread> seize_cgroup(const Cgroup& cgroup, Guardian& guardian);

// Waits for the PTRACE_INTERRUPT stop of a thread we interrupted; throws naming the tid when
// it exited or stopped for something else.
void wait_interrupt_stop(ptrace::SeizedThread& thread);

}  // namespace stasis::dump
