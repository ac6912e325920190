// pty_state: holds two pty pairs with settings a restore must bring back, and checks them every
// iteration: pair A unlocked, its slave raw with ^X as its interrupt key, a 40x132 window, its
// master in packet mode, a line passed each way (master to slave, slave to master with the
// packet byte); pair B never unlocked (its slave cannot be opened). With "same-index", the
// pairs must keep their /dev/pts numbers (a container with its own devpts instance).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>

#include "workload_status.h"

static unsigned pty_index(int master) {
  unsigned n = 0;
  if (ioctl(master, TIOCGPTN, &n) < 0) ws_failf("TIOCGPTN: %s", strerror(errno));
  return n;
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE [same-index]");
  const int same_index = argc > 2 && strcmp(argv[2], "same-index") == 0;
  int a = posix_openpt(O_RDWR | O_NOCTTY);
  if (a < 0 || grantpt(a) < 0 || unlockpt(a) < 0) {
    fprintf(stderr, "pty_state: open pair A: %s\n", strerror(errno));
    return 1;
  }
  int a_slave = open(ptsname(a), O_RDWR | O_NOCTTY);
  int b = posix_openpt(O_RDWR | O_NOCTTY);  // left locked
  struct termios t;
  if (a_slave < 0 || b < 0 || tcgetattr(a_slave, &t) < 0) {
    fprintf(stderr, "pty_state: open the slave of A or pair B: %s\n", strerror(errno));
    return 1;
  }
  cfmakeraw(&t);
  t.c_cc[VINTR] = 0x18;
  tcsetattr(a_slave, TCSANOW, &t);
  struct winsize ws = {40, 132, 0, 0};
  int one = 1;
  if (ioctl(a, TIOCSWINSZ, &ws) < 0 || ioctl(a, TIOCPKT, &one) < 0) {
    fprintf(stderr, "pty_state: window size or packet mode: %s\n", strerror(errno));
    return 1;
  }
  const unsigned a_index = pty_index(a), b_index = pty_index(b);
  for (unsigned long long iter = 1;; ++iter) {
    struct termios now;
    struct winsize size;
    int locked = -1, packet = -1;
    if (tcgetattr(a_slave, &now) < 0 || (now.c_lflag & (ICANON | ECHO)) || now.c_cc[VINTR] != 0x18)
      ws_failf("pair A's settings changed (lflag %#x, intr %#x)", (unsigned)now.c_lflag, (unsigned)now.c_cc[VINTR]);
    if (ioctl(a_slave, TIOCGWINSZ, &size) < 0 || size.ws_row != 40 || size.ws_col != 132)
      ws_failf("pair A's window is %ux%u, not 40x132", size.ws_row, size.ws_col);
    if (ioctl(a, TIOCGPKT, &packet) < 0 || packet != 1) ws_failf("pair A's master is not in packet mode");
    if (ioctl(a, TIOCGPTLCK, &locked) < 0 || locked != 0) ws_failf("pair A is locked");
    if (ioctl(b, TIOCGPTLCK, &locked) < 0 || locked != 1) ws_failf("pair B is no longer locked");
    if (same_index && (pty_index(a) != a_index || pty_index(b) != b_index))
      ws_failf("the pairs are /dev/pts/%u and %u, not %u and %u", pty_index(a), pty_index(b), a_index, b_index);
    char line[32], back[40];
    int n = snprintf(line, sizeof line, "m%llu", iter);
    if (write(a, line, (size_t)n) != n) ws_failf("write the master: %s", strerror(errno));
    ssize_t got = read(a_slave, back, sizeof back);
    if (got != n || memcmp(line, back, (size_t)n) != 0) ws_failf("the slave read %zd bytes, not %s", got, line);
    n = snprintf(line, sizeof line, "s%llu", iter);
    if (write(a_slave, line, (size_t)n) != n) ws_failf("write the slave: %s", strerror(errno));
    got = read(a, back, sizeof back);  // packet mode: a TIOCPKT_DATA byte first
    if (got != n + 1 || back[0] != TIOCPKT_DATA || memcmp(line, back + 1, (size_t)n) != 0)
      ws_failf("the master read %zd bytes, not the packet of %s", got, line);
    ws_write(iter);
    ws_sleep_ms(10);
  }
}
