// pty_ctty: a terminal inside the job, as `script` or tmux make one. The first process holds a
// pty master; its child S starts a session of its own whose controlling terminal is the
// slave (TIOCSCTTY) on its stdio, and runs a "job" G in a process group of its own made the
// terminal's foreground group (as a shell with job control does), then waits for it.
// Each iteration the first process types "ping N" into the master; G reads the line from the
// terminal and answers "pong N ctty=C fg=F sid=S" where C says its stdin is its controlling
// terminal, of S's session (TIOCGSID), F that its group is the foreground one, S that its session is S's. The
// first process checks the answer: progress counts answers that came whole and right.
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>

#include "workload_status.h"

static void job(pid_t session) {
  // A read from the terminal before S makes our group the foreground one would stop us
  // (SIGTTIN) for good.
  for (int k = 0; tcgetpgrp(0) != getpgrp(); ++k) {
    if (k == 5000) _exit(5);
    usleep(1000);
  }
  char line[256];
  for (;;) {
    ssize_t n = read(0, line, sizeof line - 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(3);
    line[n] = 0;
    unsigned long long iter = 0;
    if (sscanf(line, "ping %llu", &iter) != 1) continue;
    pid_t owner = 0;  // TIOCGSID answers only for the caller's controlling terminal
    int ctty = ioctl(0, TIOCGSID, &owner) == 0 && owner == session;
    int fg = tcgetpgrp(0) == getpgrp();
    char answer[128];
    int len = snprintf(answer, sizeof answer, "pong %llu ctty=%d fg=%d sid=%d\n", iter, ctty, fg,
                       getsid(0) == session);
    if (write(1, answer, (size_t)len) != len) _exit(4);
  }
}

static void session_leader(const char* slave_name) {
  if (setsid() < 0) _exit(10);
  int slave = open(slave_name, O_RDWR | O_NOCTTY);
  if (slave < 0 || ioctl(slave, TIOCSCTTY, 0) < 0) _exit(11);
  struct termios t;
  tcgetattr(slave, &t);
  t.c_lflag &= ~(tcflag_t)ECHO;  // the first process reads answers only
  tcsetattr(slave, TCSANOW, &t);
  for (int k = 0; k < 3; ++k) dup2(slave, k);
  if (slave > 2) close(slave);
  pid_t g = fork();
  if (g < 0) _exit(12);
  if (g == 0) {
    setpgid(0, 0);
    job(getsid(0));
  }
  setpgid(g, g);
  signal(SIGTTOU, SIG_IGN);
  if (tcsetpgrp(0, g) < 0) _exit(13);
  int st;
  while (waitpid(g, &st, 0) < 0 && errno == EINTR) {
  }
  _exit(WIFEXITED(st) ? 20 + WEXITSTATUS(st) : 30);
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) {
    fprintf(stderr, "pty_ctty: open a pty master: %s\n", strerror(errno));
    return 1;
  }
  char slave_name[64];
  snprintf(slave_name, sizeof slave_name, "%s", ptsname(master));
  pid_t s = fork();
  if (s < 0) return 1;
  if (s == 0) {
    close(master);
    session_leader(slave_name);
  }
  char pending[1024];
  size_t have = 0;
  unsigned long long good = 0;
  for (unsigned long long iter = 1;; ++iter) {
    char ping[64];
    int n = snprintf(ping, sizeof ping, "ping %llu\n", iter);
    if (write(master, ping, (size_t)n) != n) ws_failf("write the master: %s", strerror(errno));
    // The answer, within 50 polls of 0.1 s (counted, not timed: a dump and restore may come
    // in between).
    char want[128];
    snprintf(want, sizeof want, "pong %llu ctty=1 fg=1 sid=1", iter);
    int found = 0;
    for (int round = 0; !found && round < 50; ++round) {
      struct pollfd p = {master, POLLIN, 0};
      if (poll(&p, 1, 100) != 1) continue;
      ssize_t k = read(master, pending + have, sizeof pending - 1 - have);
      if (k <= 0) {
        if (k < 0 && errno == EINTR) continue;
        ws_failf("read the master: %s", k < 0 ? strerror(errno) : "end");
        break;
      }
      have += (size_t)k;
      pending[have] = 0;
      char* at = strstr(pending, want);
      if (at) {
        found = 1;
        char* end = strchr(at, '\n');
        size_t used = end ? (size_t)(end + 1 - pending) : have;
        memmove(pending, pending + used, have - used);
        have -= used;
      } else if (strstr(pending, "pong") && strchr(pending, '\n')) {
        char* nl = strchr(pending, '\n');
        *nl = 0;
        if (strstr(pending, "pong ")) ws_failf("answer \"%s\", not \"%s\"", strstr(pending, "pong "), want);
        *nl = '\n';
        size_t used = (size_t)(nl + 1 - pending);
        memmove(pending, pending + used, have - used);
        have -= used;
      }
      if (have > sizeof pending - 128) have = 0;
    }
    int st;
    if (waitpid(s, &st, WNOHANG) == s) ws_failf("the session leader exited (status %d)", st);
    if (found) ++good;
    else ws_failf("no answer to ping %llu within 5 s", iter);
    ws_write(good);
    ws_sleep_ms(10);
  }
}
