// pty: holds a pty pair, as a terminal emulator, `script` or an expect-like driver does:
// each iteration writes a line into the master and reads it back from the slave (raw mode).
// A checkpoint of it must be refused (terminals cannot be restored) with the job left running.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <termios.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) {
    fprintf(stderr, "pty: open a pty master: %s\n", strerror(errno));
    return 1;
  }
  int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
  struct termios t;
  if (slave < 0 || tcgetattr(slave, &t) < 0) {
    fprintf(stderr, "pty: open the slave: %s\n", strerror(errno));
    return 1;
  }
  cfmakeraw(&t);
  tcsetattr(slave, TCSANOW, &t);
  for (unsigned long long iter = 1;; ++iter) {
    char line[32], back[32];
    int n = snprintf(line, sizeof line, "%llu", iter);
    if (write(master, line, (size_t)n) != n) ws_failf("write the master: %s", strerror(errno));
    ssize_t got = read(slave, back, sizeof back);
    if (got != n || memcmp(line, back, (size_t)n) != 0) ws_failf("the slave read %zd bytes, not the line %s", got, line);
    ws_write(iter);
    ws_sleep_ms(10);
  }
}
