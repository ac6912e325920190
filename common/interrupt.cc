#include "common/interrupt.h"

#include <cstring>

#include "common/error.h"

namespace stasis {

namespace {

constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};
volatile std::sig_atomic_t g_signal = 0;

void on_signal(int sig) { g_signal = sig; }

volatile std::sig_atomic_t g_forward_pid = 0;

void forward_signal(int sig) {
  if (g_forward_pid > 0) ::kill(g_forward_pid, sig);
}

}  // namespace

InterruptGuard::InterruptGuard() {
  g_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &sa, &old_[i]);
}

InterruptGuard::~InterruptGuard() {
  for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
}

void forward_signals_to(pid_t pid) {
  g_forward_pid = pid;
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT}) ::sigaction(sig, &sa, nullptr);
}

int interrupted_by() { return g_signal; }

void check_interrupted(const char* operation, const char* outcome) {
  if (int sig = g_signal) fail("{} interrupted by {}; {}", operation, strsignal(sig), outcome);
}

}  // namespace stasis
