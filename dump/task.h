// One seized process as the dump modules see it: host ids, ids inside its PID namespace, and
// its threads (leader first), all in ptrace-stops.
#pragma once

#include <sys/types.h>

#include <vector>

#include "common/ptrace.h"

namespace stasis::dump {

struct Task {
  pid_t host_pid = 0;
  pid_t ns_pid = 0;                          // last field of NSpid
  std::vector<ptrace::SeizedThread> threads;  // leader first
  std::vector<pid_t> ns_tids;                // same order as threads
  pid_t ns_ppid = 0;
  pid_t ns_pgid = 0;
  pid_t ns_sid = 0;
};

}  // namespace stasis::dump
