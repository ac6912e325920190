// events: an event loop on epoll, as libuv, glib or Go's runtime run one. The epoll watches
//   a timerfd  CLOCK_MONOTONIC, every 20 ms (data 0x7)
//   an eventfd in semaphore mode holding a count of 3 (data 0xe); each iteration adds 1 and
//              takes 1, and every 25 iterations the whole count is taken and checked (3)
//   a signalfd for SIGUSR1, which is blocked and raised each iteration (data 0x5)
//   a pipe's read end, a byte written to it each iteration (data 0x9), added through a
//              second fd closed right after: the epoll keys it by that closed number, so
//              EPOLL_CTL_MOD by the read end's own number must keep failing with ENOENT
// Every iteration waits for the epoll until the signal, the eventfd and the pipe have each
// reported once (with their data), and the timer ticks must keep coming.
// A second timerfd, every 300 ms, is not watched and is read only every 200 iterations: it
// fired and waits to be read most of the time (fdinfo it_value 0), and its fdinfo must always
// show its interval and at least one tick; when read it must have ticked.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>

#include "workload_status.h"

static void die(const char* what) {
  fprintf(stderr, "events: %s: %s\n", what, strerror(errno));
  exit(1);
}

// ticks, it_value and it_interval (ns) of a timerfd from /proc/self/fdinfo; 0 on success.
static int timerfd_info(int fd, unsigned long long* ticks, unsigned long long* value, unsigned long long* interval) {
  char path[64], text[1024];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  int f = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = f < 0 ? -1 : read(f, text, sizeof text - 1);
  if (f >= 0) close(f);
  if (n <= 0) return -1;
  text[n] = 0;
  unsigned long long vs, vns, is, ins;
  char* t = strstr(text, "ticks:");
  char* v = strstr(text, "it_value:");
  char* i = strstr(text, "it_interval:");
  if (!t || !v || !i || sscanf(t, "ticks: %llu", ticks) != 1 || sscanf(v, "it_value: (%llu, %llu)", &vs, &vns) != 2 ||
      sscanf(i, "it_interval: (%llu, %llu)", &is, &ins) != 2)
    return -1;
  *value = vs * 1000000000ULL + vns;
  *interval = is * 1000000000ULL + ins;
  return 0;
}

static void watch(int ep, int fd, uint64_t data) {
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = data};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, NULL);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  int efd = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
  int sfd = signalfd(-1, &usr1, SFD_NONBLOCK);
  int p[2];
  if (ep < 0 || tfd < 0 || efd < 0 || sfd < 0 || pipe2(p, O_NONBLOCK) < 0) die("create");
  struct itimerspec its = {{0, 20000000}, {0, 20000000}};
  if (timerfd_settime(tfd, 0, &its, NULL) < 0) die("timerfd_settime");
  int fired = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec soon = {{0, 300000000}, {0, 1000000}};
  if (fired < 0 || timerfd_settime(fired, 0, &soon, NULL) < 0) die("timerfd (fired)");
  ws_sleep_ms(5);
  watch(ep, tfd, 0x7);
  watch(ep, efd, 0xe);
  watch(ep, sfd, 0x5);
  int alias = dup(p[0]);
  if (alias < 0) die("dup");
  watch(ep, alias, 0x9);
  close(alias);
  // Another file takes the number: restore must add the pipe's item through that number and
  // leave this file there, without close-on-exec.
  int filler = open("/dev/null", O_RDONLY);
  if (filler != alias) die("open /dev/null at the closed number");

  uint64_t ticks = 0, ticks_checked = 0;
  for (unsigned long long iter = 1;; ++iter) {
    uint64_t one = 1;
    if (write(efd, &one, sizeof one) != sizeof one) ws_failf("eventfd write: %s", strerror(errno));
    raise(SIGUSR1);
    if (write(p[1], "x", 1) != 1) ws_failf("pipe write: %s", strerror(errno));
    int seen_e = 0, seen_s = 0, seen_p = 0;
    double deadline = ws_monotonic() + 2.0;
    while (!(seen_e && seen_s && seen_p) && ws_monotonic() < deadline) {
      struct epoll_event evs[8];
      int n = epoll_wait(ep, evs, 8, 100);
      if (n < 0 && errno != EINTR) ws_failf("epoll_wait: %s", strerror(errno));
      for (int i = 0; i < n; ++i) {
        uint64_t v = 0;
        switch (evs[i].data.u64) {
          case 0x7:
            if (read(tfd, &v, sizeof v) == sizeof v) ticks += v;
            break;
          case 0xe:
            if (!seen_e && read(efd, &v, sizeof v) == sizeof v && v == 1) seen_e = 1;
            break;
          case 0x5: {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR1) seen_s = 1;
            break;
          }
          case 0x9: {
            char c;
            if (read(p[0], &c, 1) == 1 && c == 'x') seen_p = 1;
            break;
          }
          default:
            ws_failf("epoll reported data %#llx", (unsigned long long)evs[i].data.u64);
        }
      }
    }
    if (!seen_e || !seen_s || !seen_p) ws_failf("missing events: eventfd %d signalfd %d pipe %d", seen_e, seen_s, seen_p);
    if (iter % 25 == 0) {
      int count = 0;
      uint64_t v;
      while (read(efd, &v, sizeof v) == sizeof v) ++count;
      if (count != 3) ws_failf("the eventfd held %d, expected 3", count);
      uint64_t three = 3;
      if (write(efd, &three, sizeof three) != sizeof three) ws_failf("eventfd refill: %s", strerror(errno));
      if (ticks == ticks_checked) ws_failf("the timerfd stopped ticking");
      struct epoll_event mod = {.events = EPOLLIN, .data.u64 = 0x9};
      if (epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &mod) == 0 || errno != ENOENT)
        ws_failf("the pipe is watched by its own fd %d, not by the closed one it was added with", p[0]);
      struct stat st;
      if (fstat(filler, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3) || fcntl(filler, F_GETFD) != 0)
        ws_failf("fd %d is no longer /dev/null without close-on-exec", filler);
      ticks_checked = ticks;
    }
    unsigned long long fired_ticks, fired_value, fired_interval;
    if (timerfd_info(fired, &fired_ticks, &fired_value, &fired_interval) < 0) {
      ws_failf("cannot read the fdinfo of the fired timerfd");
    } else if (fired_interval != 300000000ULL) {
      ws_failf("the fired timerfd's interval is %llu ns, expected 300 ms (value %llu ns, %llu ticks)", fired_interval,
               fired_value, fired_ticks);
    } else if (fired_value == 0 && fired_ticks == 0) {
      // Also what the kernel shows for a moment at each expiry, before the timer's interrupt
      // counts the tick; a disarmed timer shows it for good.
      ws_sleep_ms(50);
      if (timerfd_info(fired, &fired_ticks, &fired_value, &fired_interval) == 0 && fired_value == 0 && fired_ticks == 0)
        ws_failf("the fired timerfd is disarmed (no time left, no ticks)");
    }
    if (iter % 200 == 0) {
      uint64_t v = 0;
      if (read(fired, &v, sizeof v) != sizeof v || v == 0) ws_failf("the fired timerfd did not tick: %s", strerror(errno));
    }
    ws_write(iter);
    ws_sleep_ms(10);
  }
}
