// core-<nspid>.img: the CPU state of every thread and the per-process attributes.
#pragma once

#include <sys/user.h>

#include <cstdint>
#include <string>

#include <time.h>

#include <functional>

#include "core.pb.h"
#include "dump/inject.h"
#include "dump/task.h"

namespace stasis::dump {

// How a thread was caught in a system call, and the registers to store so that it resumes
// correctly after a restore. Applied to a copy: the live registers are never changed (so a
// --leave-running job is resumed by the kernel's own restart logic).
struct RestartAdjustment {
  std::string state;              // "running", "syscall-restart", "syscall-eintr", "syscall-returned"
  int64_t interrupted_syscall = -1;
};
//
// A sleep that was already interrupted once and resumed shows up as restart_syscall(2); its
// clock_nanosleep arguments are still in the registers. read_timespec (reading the task's
// memory, false when it cannot) lets us check that they really are those of a sleep, and
// then the sleep is restarted like a first interruption instead of failing with EINTR.
using TimespecReader = std::function<bool(uint64_t address, timespec* out)>;
RestartAdjustment adjust_for_restart(user_regs_struct& regs, const TimespecReader& read_timespec = nullptr);

// Everything of TaskCore; injects prctl calls through injector.
pb::TaskCore collect_core(Task& task, Injector& injector);

}  // namespace stasis::dump
