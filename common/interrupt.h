// Ctrl-C (or SIGTERM, SIGHUP) during a dump or a restore must not leave a job frozen, half
// traced or half built: while an InterruptGuard lives, those signals only set a flag, and
// check_interrupted() (called between phases and between page batches) turns it into an
// Error, so the usual unwinding cleans up (dump: detach, thaw, remove the partial directory;
// restore: remove the half-built container).
#pragma once

#include <sys/types.h>

#include <csignal>

namespace stasis {

class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();  // puts the previous handlers back
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  struct sigaction old_[3];
};

// Throws Error "OPERATION interrupted by SIGNAME; OUTCOME" once one of the signals arrived.
void check_interrupted(const char* operation, const char* outcome);

// The signal an InterruptGuard caught since it was made (0: none); it stays readable after
// the guard is gone.
int interrupted_by();

// A foreground `run` or `restore` once the job runs: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1,
// SIGUSR2, SIGWINCH and SIGCONT sent to us go to pid (the job's PID 1, which is not in our
// terminal's process group), until we exit. No InterruptGuard may be alive.
void forward_signals_to(pid_t pid);

}  // namespace stasis
