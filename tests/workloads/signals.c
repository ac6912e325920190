// signals: signal state that must survive a checkpoint.
//   SIGUSR1  SA_SIGINFO|SA_RESTART|SA_ONSTACK handler (sa_mask holds SIGWINCH); the process
//            sends itself one per iteration and the handler must run once for each, on the
//            alternate stack; the sigaction is read back and compared every iteration
//   SIGUSR2  blocked, raised once at start: must stay pending (sigpending) and blocked forever
//   SIGALRM  ITIMER_REAL interval timer (50 ms) whose handler's tick count must keep rising;
//            getitimer must still show the interval
//   SIGPIPE  ignored (SIG_IGN must come back)
//   sigaltstack: address, size and flags read back every iteration
//   SIGTRAP  plain handler; the process sends itself one per iteration and it must run
//   every other signal: SigCgt and SigIgn of /proc/self/status stay what they were at start
//            (no handler or SIG_IGN appears that the process did not install)
//   ITIMER_VIRTUAL disarmed with a 1 s interval kept (value 0): must stay disarmed (SIGVTALRM
//            would kill the process) with its interval
//   ITIMER_PROF armed for 1000 s with a 500 s interval: must stay armed
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <sys/time.h>

#include "workload_status.h"

static volatile sig_atomic_t usr1_count, alrm_count, trap_count;
static volatile sig_atomic_t usr1_bad_info, usr1_off_stack;
static char altstack[64 * 1024] __attribute__((aligned(16)));

static void on_usr1(int sig, siginfo_t* info, void* uc) {
  (void)uc;
  char here;
  if (sig != SIGUSR1 || info->si_signo != SIGUSR1 || info->si_pid != getpid()) usr1_bad_info = 1;
  if (&here < altstack || &here >= altstack + sizeof altstack) usr1_off_stack = 1;
  ++usr1_count;
}

static void on_alrm(int sig) {
  (void)sig;
  ++alrm_count;
}

static void on_trap(int sig) {
  (void)sig;
  ++trap_count;
}

// The hex mask after key ("SigCgt:") in /proc/self/status, or ~0 when unreadable.
static unsigned long long status_mask(const char* key) {
  char text[8192];
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof text - 1);
  if (fd >= 0) close(fd);
  if (n <= 0) return ~0ULL;
  text[n] = 0;
  char* p = strstr(text, key);
  return p ? strtoull(p + strlen(key), NULL, 16) : ~0ULL;
}

static void die(const char* what) {
  fprintf(stderr, "signals: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void check_action(int sig, void* handler, int flags, int masked) {
  struct sigaction sa;
  if (sigaction(sig, NULL, &sa) < 0) {
    ws_failf("sigaction(%d) readback: %s", sig, strerror(errno));
    return;
  }
  void* got = (sa.sa_flags & SA_SIGINFO) ? (void*)sa.sa_sigaction : (void*)sa.sa_handler;
  if (got != handler) ws_failf("signal %d: handler %p, expected %p", sig, got, handler);
  // The kernel adds SA_RESTORER; compare only the flags we set.
  const int mine = SA_SIGINFO | SA_RESTART | SA_ONSTACK | SA_NODEFER | SA_RESETHAND;
  if ((sa.sa_flags & mine) != flags) ws_failf("signal %d: flags %#x, expected %#x", sig, sa.sa_flags & mine, flags);
  if (masked && !sigismember(&sa.sa_mask, masked)) ws_failf("signal %d: sa_mask lost signal %d", sig, masked);
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) < 0) die("sigaltstack");

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_usr1;
  sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGWINCH);
  if (sigaction(SIGUSR1, &sa, NULL) < 0) die("sigaction SIGUSR1");

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alrm;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGALRM, &sa, NULL) < 0) die("sigaction SIGALRM");

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  if (sigaction(SIGPIPE, &sa, NULL) < 0) die("sigaction SIGPIPE");

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_trap;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGTRAP, &sa, NULL) < 0) die("sigaction SIGTRAP");

  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  if (sigprocmask(SIG_BLOCK, &block, NULL) < 0) die("sigprocmask");
  if (raise(SIGUSR2) != 0) die("raise SIGUSR2");

  struct itimerval it = {.it_interval = {0, 50000}, .it_value = {0, 50000}};
  if (setitimer(ITIMER_REAL, &it, NULL) < 0) die("setitimer");
  struct itimerval virt = {.it_interval = {1, 0}, .it_value = {0, 0}};
  if (setitimer(ITIMER_VIRTUAL, &virt, NULL) < 0) die("setitimer ITIMER_VIRTUAL");
  struct itimerval prof = {.it_interval = {500, 0}, .it_value = {1000, 0}};
  if (setitimer(ITIMER_PROF, &prof, NULL) < 0) die("setitimer ITIMER_PROF");
  const unsigned long long caught = status_mask("SigCgt:"), ignored = status_mask("SigIgn:");

  sig_atomic_t last_alrm = 0;
  unsigned long alrm_stalled = 0;
  for (unsigned long long iter = 1;; ++iter) {
    // SIGUSR1 to ourselves (single thread: delivered before kill returns).
    sig_atomic_t before = usr1_count;
    if (kill(getpid(), SIGUSR1) < 0) ws_failf("kill SIGUSR1: %s", strerror(errno));
    if (usr1_count != before + 1) ws_failf("SIGUSR1 handler ran %d times for one signal", (int)(usr1_count - before));
    if ((unsigned long long)usr1_count != iter) ws_failf("SIGUSR1 count %d, expected %llu", (int)usr1_count, iter);
    if (usr1_bad_info) ws_failf("SIGUSR1 handler got a wrong siginfo");
    if (usr1_off_stack) ws_failf("SIGUSR1 handler did not run on the alternate stack");

    check_action(SIGUSR1, (void*)on_usr1, SA_SIGINFO | SA_RESTART | SA_ONSTACK, SIGWINCH);
    check_action(SIGALRM, (void*)on_alrm, SA_RESTART, 0);
    check_action(SIGPIPE, (void*)SIG_IGN, 0, 0);
    check_action(SIGTRAP, (void*)on_trap, 0, 0);

    sig_atomic_t traps = trap_count;
    if (kill(getpid(), SIGTRAP) < 0) ws_failf("kill SIGTRAP: %s", strerror(errno));
    if (trap_count != traps + 1) ws_failf("SIGTRAP handler ran %d times for one signal", (int)(trap_count - traps));
    unsigned long long now_caught = status_mask("SigCgt:"), now_ignored = status_mask("SigIgn:");
    if (now_caught != caught) ws_failf("SigCgt is %llx, expected %llx", now_caught, caught);
    if (now_ignored != ignored) ws_failf("SigIgn is %llx, expected %llx", now_ignored, ignored);

    struct itimerval t;
    getitimer(ITIMER_VIRTUAL, &t);
    if (t.it_value.tv_sec || t.it_value.tv_usec || t.it_interval.tv_sec != 1 || t.it_interval.tv_usec)
      ws_failf("ITIMER_VIRTUAL is %ld.%06ld s every %ld.%06ld s, expected disarmed with a 1 s interval",
               (long)t.it_value.tv_sec, (long)t.it_value.tv_usec, (long)t.it_interval.tv_sec,
               (long)t.it_interval.tv_usec);
    getitimer(ITIMER_PROF, &t);
    if (t.it_value.tv_sec < 900 || t.it_interval.tv_sec != 500)
      ws_failf("ITIMER_PROF is %ld s every %ld s, expected armed (about 1000 s) every 500 s", (long)t.it_value.tv_sec,
               (long)t.it_interval.tv_sec);

    sigset_t pending, mask;
    sigpending(&pending);
    if (!sigismember(&pending, SIGUSR2)) ws_failf("blocked SIGUSR2 is no longer pending");
    if (sigismember(&pending, SIGUSR1)) ws_failf("SIGUSR1 is pending but should have been handled");
    sigprocmask(SIG_BLOCK, NULL, &mask);
    if (!sigismember(&mask, SIGUSR2)) ws_failf("SIGUSR2 is no longer blocked");
    if (sigismember(&mask, SIGUSR1) || sigismember(&mask, SIGALRM)) ws_failf("SIGUSR1 or SIGALRM became blocked");

    stack_t cur;
    if (sigaltstack(NULL, &cur) < 0) {
      ws_failf("sigaltstack readback: %s", strerror(errno));
    } else if (cur.ss_sp != (void*)altstack || cur.ss_size != sizeof altstack || cur.ss_flags != 0) {
      ws_failf("sigaltstack is %p/%zu/%#x, expected %p/%zu/0", cur.ss_sp, cur.ss_size, cur.ss_flags, (void*)altstack,
               sizeof altstack);
    }

    struct itimerval now;
    getitimer(ITIMER_REAL, &now);
    if (now.it_interval.tv_sec != 0 || now.it_interval.tv_usec != 50000)
      ws_failf("ITIMER_REAL interval is %ld.%06ld s, expected 0.050000", (long)now.it_interval.tv_sec,
               (long)now.it_interval.tv_usec);
    // 50 ms ticks against 20 ms iterations: 100 iterations without a tick is a dead timer.
    if (alrm_count < last_alrm) ws_failf("SIGALRM count went backwards");
    if (alrm_count == last_alrm) {
      if (++alrm_stalled > 100) ws_failf("no SIGALRM for %lu iterations", alrm_stalled);
    } else {
      alrm_stalled = 0;
    }
    last_alrm = alrm_count;

    ws_write(iter);
    ws_sleep_ms(20);
  }
}
