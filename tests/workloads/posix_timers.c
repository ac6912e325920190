// posix_timers: POSIX timers (timer_create) that must come back with their ids, clocks,
// notification and intervals:
//   t_signal  CLOCK_MONOTONIC, SIGEV_SIGNAL SIGUSR1 with sival 0x5eed, every 30 ms; its
//             handler checks si_code SI_TIMER, si_timerid and si_value, and counts
//   t_thread  CLOCK_BOOTTIME, SIGEV_THREAD_ID to the worker thread, SIGUSR2 every 40 ms; the
//             handler checks that it runs in the worker, and counts
//   t_none    CLOCK_REALTIME, SIGEV_NONE, armed for an hour with a 7 s interval
//   t_idle    CLOCK_MONOTONIC, created and never armed
//   t_blocked CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN, blocked in every thread, every 5 ms: its
//             signal is pending nearly always; every 25 iterations it is taken with
//             sigtimedwait, and exactly one must be queued (the kernel queues a timer's signal
//             once and counts overruns), from this timer
// Every iteration: both counts keep rising (checked every 25 iterations, ~0.5 s), each id
// still answers timer_gettime with its interval (t_idle disarmed), /proc/self/timers lists
// exactly these five ids.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

#include "workload_status.h"

static timer_t t_signal, t_thread, t_none, t_idle, t_blocked;
static volatile sig_atomic_t signal_count, thread_count, bad_info, wrong_thread;
static volatile pid_t worker_tid;

static int timer_id(timer_t t) { return (int)(intptr_t)t; }

static long long monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void on_usr1(int sig, siginfo_t* info, void* uc) {
  (void)sig;
  (void)uc;
  if (info->si_code != SI_TIMER || info->si_timerid != timer_id(t_signal) || info->si_value.sival_int != 0x5eed)
    bad_info = 1;
  ++signal_count;
}

static void on_usr2(int sig, siginfo_t* info, void* uc) {
  (void)sig;
  (void)uc;
  if (info->si_code != SI_TIMER || syscall(SYS_gettid) != worker_tid) wrong_thread = 1;
  ++thread_count;
}

static void die(const char* what) {
  fprintf(stderr, "posix_timers: %s: %s\n", what, strerror(errno));
  exit(1);
}

// No sooner than this can t fire next (CLOCK_MONOTONIC ns): now plus what timer_gettime says
// is left, read after now.
static long long earliest_expiry(timer_t t) {
  const long long now = monotonic_ns();
  struct itimerspec left;
  if (timer_gettime(t, &left) < 0) die("timer_gettime");
  return now + left.it_value.tv_sec * 1000000000LL + left.it_value.tv_nsec;
}

static void* worker(void* arg) {
  (void)arg;
  worker_tid = (pid_t)syscall(SYS_gettid);
  for (;;) ws_sleep_ms(1000);
  return NULL;
}

static void arm(timer_t t, long first_ms, long interval_ms) {
  struct itimerspec its = {{interval_ms / 1000, (interval_ms % 1000) * 1000000L},
                           {first_ms / 1000, (first_ms % 1000) * 1000000L}};
  if (timer_settime(t, 0, &its, NULL) < 0) die("timer_settime");
}

static void check_interval(const char* name, timer_t t, long interval_ms, int armed) {
  struct itimerspec its;
  if (timer_gettime(t, &its) < 0) {
    ws_failf("%s (id %d): timer_gettime: %s", name, timer_id(t), strerror(errno));
    return;
  }
  long got = (long)its.it_interval.tv_sec * 1000 + its.it_interval.tv_nsec / 1000000;
  if (got != interval_ms) ws_failf("%s: interval %ld ms, expected %ld", name, got, interval_ms);
  int is_armed = its.it_value.tv_sec != 0 || its.it_value.tv_nsec != 0;
  if (is_armed != armed) ws_failf("%s: %s, expected %s", name, is_armed ? "armed" : "disarmed", armed ? "armed" : "not");
}

static void check_proc_timers(void) {
  char text[4096];
  text[0] = '\n';  // every "ID: " line, the first too, then follows a newline
  int fd = open("/proc/self/timers", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, text + 1, sizeof text - 2);
  if (fd >= 0) close(fd);
  if (n < 0) {
    ws_failf("read /proc/self/timers: %s", strerror(errno));
    return;
  }
  text[n + 1] = 0;
  int count = 0;  // "\nID: " lines ("ClockID: " lines do not count)
  for (char* p = text; (p = strstr(p, "\nID: ")) != NULL; p += 5) ++count;
  if (count != 5) ws_failf("/proc/self/timers lists %d timers, expected 5", count);
  timer_t all[] = {t_signal, t_thread, t_none, t_idle, t_blocked};
  for (int i = 0; i < 5; ++i) {
    char want[32];
    snprintf(want, sizeof want, "\nID: %d\n", timer_id(all[i]));
    if (!strstr(text, want)) ws_failf("/proc/self/timers lacks id %d", timer_id(all[i]));
  }
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sa.sa_sigaction = on_usr1;
  if (sigaction(SIGUSR1, &sa, NULL) < 0) die("sigaction SIGUSR1");
  sa.sa_sigaction = on_usr2;
  if (sigaction(SIGUSR2, &sa, NULL) < 0) die("sigaction SIGUSR2");
  // SIGRTMIN is taken with sigtimedwait only: every thread blocks it.
  sigset_t rtmin;
  sigemptyset(&rtmin);
  sigaddset(&rtmin, SIGRTMIN);
  pthread_sigmask(SIG_BLOCK, &rtmin, NULL);
  // SIGUSR2 goes to the worker only: the main thread blocks it.
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0) die("pthread_create");
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &usr2, NULL);
  while (!worker_tid) ws_sleep_ms(1);

  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_SIGNAL;
  sev.sigev_signo = SIGUSR1;
  sev.sigev_value.sival_int = 0x5eed;
  if (timer_create(CLOCK_MONOTONIC, &sev, &t_signal) < 0) die("timer_create signal");
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = SIGUSR2;
  sev._sigev_un._tid = worker_tid;
  if (timer_create(CLOCK_BOOTTIME, &sev, &t_thread) < 0) die("timer_create thread");
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_NONE;
  if (timer_create(CLOCK_REALTIME, &sev, &t_none) < 0) die("timer_create none");
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_SIGNAL;
  sev.sigev_signo = SIGUSR1;
  if (timer_create(CLOCK_MONOTONIC, &sev, &t_idle) < 0) die("timer_create idle");
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_SIGNAL;
  sev.sigev_signo = SIGRTMIN;
  if (timer_create(CLOCK_MONOTONIC, &sev, &t_blocked) < 0) die("timer_create blocked");
  arm(t_blocked, 5, 5);
  arm(t_signal, 30, 30);
  arm(t_thread, 40, 40);
  arm(t_none, 3600 * 1000, 7000);

  sig_atomic_t last_signal = 0, last_thread = 0;
  for (unsigned long long iter = 1;; ++iter) {
    if (bad_info) ws_failf("a SIGUSR1 came with the wrong siginfo");
    if (wrong_thread) ws_failf("a SIGUSR2 ran outside the worker thread (tid %d)", (int)worker_tid);
    check_interval("t_signal", t_signal, 30, 1);
    check_interval("t_thread", t_thread, 40, 1);
    check_interval("t_none", t_none, 7000, 1);
    check_interval("t_idle", t_idle, 0, 0);
    check_interval("t_blocked", t_blocked, 5, 1);
    check_proc_timers();
    if (iter % 25 == 0) {
      if (signal_count == last_signal) ws_failf("t_signal stopped firing (%d)", (int)signal_count);
      if (thread_count == last_thread) ws_failf("t_thread stopped firing (%d)", (int)thread_count);
      last_signal = signal_count;
      last_thread = thread_count;
      int queued = 0;
      siginfo_t si;
      const struct timespec no_wait = {0, 0};
      long long earliest_next = 0;  // CLOCK_MONOTONIC ns
      while (sigtimedwait(&rtmin, &si, &no_wait) == SIGRTMIN) {
        if (si.si_code != SI_TIMER || si.si_timerid != timer_id(t_blocked))
          ws_failf("a SIGRTMIN came with si_code %d, timer %d, not from t_blocked", si.si_code, si.si_timerid);
        // Taking the signal re-arms the timer: if this thread is held up past its next expiry
        // (a busy machine), it rightly queues one more. A second one is wrong only when it
        // comes sooner than the timer could have fired again.
        if (++queued > 1 && monotonic_ns() >= earliest_next) queued = 1;
        earliest_next = earliest_expiry(t_blocked);
      }
      if (queued != 1) ws_failf("t_blocked had %d signals queued, expected 1", queued);
    }
    ws_write(iter);
    ws_sleep_ms(20);
  }
}
