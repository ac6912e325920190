// Ctrl-C (or SIGTERM, SIGHUP) during a dump must not leave the job frozen or half-traced: while
// an InterruptGuard lives, those signals only set a flag, and check_interrupted() (called
// between phases and between page batches) turns it into an Error, so the usual unwinding
// detaches the threads, thaws the cgroup and removes the partial directory.
#pragma once

#include <csignal>

namespace stasis::dump {

class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();  // puts the previous handlers back
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  struct sigaction old_[3];
};

// Throws Error "interrupted by SIGNAME" once one of the signals arrived.
void check_interrupted();

}  // namespace stasis::dump
