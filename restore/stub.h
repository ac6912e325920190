// The stub: the process that becomes the restored one. It is forked from the restorer inside
// the new container, so it already holds the loaded images. On itself, in plain C++, it opens
// the files and sets what needs no special address space (fd table, cwd, umask, signal
// handlers, rlimits); then it maps our code page, reports to the restorer through the control
// pipe, and waits, all signals blocked, to be taken over with ptrace.
#pragma once

#include <cstdint>
#include <string>

#include "restore/plan.h"

namespace stasis::restore {

// What the stub tells the restorer: one write, smaller than PIPE_BUF so it is atomic.
struct StubReport {
  int32_t ok = 0;
  uint64_t code_page = 0;
  char error[1024] = {};
};

// Never returns. control_fd: the write end of the control pipe.
[[noreturn]] void run_stub(const RestorePlan& plan, int control_fd);

// In the restorer: waits (bounded) for the stub's report; throws with the stub's error.
StubReport read_stub_report(int control_fd, pid_t init_host_pid, int timeout_ms);

}  // namespace stasis::restore
