// pty_inflight: bytes waiting in a pty pair both ways, never read until SIGUSR1: a line and an
// unfinished one typed into the master (canonical mode, echo on: the echo waits at the
// master too), and a line written by the slave. Every iteration checks what waits (without
// taking it); on SIGUSR1 it reads it all and checks every byte.
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>

#include "workload_status.h"

static volatile sig_atomic_t verify_now;
static void on_usr1(int sig) {
  (void)sig;
  verify_now = 1;
}

static const char typed[] = "typed line\npartial";
static const char line_end[] = "typed line\n";                                 // readable at the slave
static const char at_master[] = "typed line\r\npartialfrom slave\r\n";  // echo, then the slave's line

static int waiting(int fd) {
  int n = -1;
  return ioctl(fd, FIONREAD, &n) < 0 ? -1 : n;
}

// The queues as expected? The kernel passes what is written on to the other side a moment
// later (a work item): look again for a while before calling it wrong.
static int queues_ok(int master, int slave) {
  for (int k = 0; k < 100; ++k) {
    if (waiting(slave) == (int)strlen(line_end) && waiting(master) == (int)strlen(at_master)) return 1;
    ws_sleep_ms(5);
  }
  return 0;
}

static void read_exactly(int fd, char* buf, size_t n, const char* what) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = read(fd, buf + got, n - got);
    if (k <= 0) {
      ws_failf("read %s: %s", what, k < 0 ? strerror(errno) : "end of file");
      return;
    }
    got += (size_t)k;
  }
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  signal(SIGUSR1, on_usr1);
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) {
    fprintf(stderr, "pty_inflight: open a pty: %s\n", strerror(errno));
    return 1;
  }
  int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
  if (slave < 0 || write(master, typed, strlen(typed)) != (ssize_t)strlen(typed)) {
    fprintf(stderr, "pty_inflight: type into the pty: %s\n", strerror(errno));
    return 1;
  }
  // The echo comes a moment later: the slave's line goes after it.
  for (int k = 0; k < 200 && waiting(master) < 19; ++k) ws_sleep_ms(5);
  if (write(slave, "from slave\n", 11) != 11) {
    fprintf(stderr, "pty_inflight: fill the pty: %s\n", strerror(errno));
    return 1;
  }
  if (!queues_ok(master, slave)) {
    fprintf(stderr, "pty_inflight: the queues hold %d and %d bytes\n", waiting(slave), waiting(master));
    return 1;
  }
  int verified = 0;
  for (unsigned long long iter = 1;; ++iter) {
    if (verify_now && !verified) {
      verified = 1;
      char buf[64] = {0};
      ssize_t n = read(slave, buf, sizeof buf);  // canonical: the finished line only
      if (n != (ssize_t)strlen(line_end) || memcmp(buf, line_end, (size_t)n) != 0)
        ws_failf("the slave read %zd bytes '%.*s', not the line", n, (int)(n > 0 ? n : 0), buf);
      struct termios t;
      tcgetattr(slave, &t);
      t.c_lflag &= ~(tcflag_t)ICANON;
      t.c_cc[VMIN] = 0;
      t.c_cc[VTIME] = 0;
      tcsetattr(slave, TCSANOW, &t);
      memset(buf, 0, sizeof buf);
      n = read(slave, buf, sizeof buf);  // then the unfinished one
      if (n != 7 || memcmp(buf, "partial", 7) != 0) ws_failf("the slave then read %zd bytes '%.*s', not 'partial'", n,
                                                            (int)(n > 0 ? n : 0), buf);
      memset(buf, 0, sizeof buf);
      read_exactly(master, buf, strlen(at_master), "the master");
      if (memcmp(buf, at_master, strlen(at_master)) != 0) ws_failf("the master read '%s'", buf);
      if (waiting(master) != 0 || waiting(slave) != 0) ws_failf("more bytes than were written wait in the pty");
    } else if (!verified && !queues_ok(master, slave)) {
      ws_failf("the pty holds %d bytes for the slave and %d for the master, not %zu and %zu", waiting(slave),
               waiting(master), strlen(line_end), strlen(at_master));
    }
    ws_write(iter);
    ws_sleep_ms(10);
  }
}
