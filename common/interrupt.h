// Ctrl-C (or SIGTERM, SIGHUP) during a dump or a restore must not leave a job frozen, half
// traced or half built: while an InterruptGuard lives, those signals only set a flag, and
// check_interrupted() (called between phases and between page batches) turns it into an
// Error, so the usual unwinding cleans up (dump: detach, thaw, remove the partial directory;
// restore: remove the half-built container).
#pragma once

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

}  // namespace stasis
