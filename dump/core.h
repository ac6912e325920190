// core-<nspid>.img: the CPU state of every thread and the per-process attributes.
#pragma once

#include <sys/user.h>

#include <cstdint>
#include <string>

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
RestartAdjustment adjust_for_restart(user_regs_struct& regs);

// Everything of TaskCore; injects prctl calls through injector.
pb::TaskCore collect_core(Task& task, Injector& injector);

}  // namespace stasis::dump
