// tree_daemon: a daemon as the classic double fork makes it. The parent (a container's PID 1)
// forks X, X calls setsid() and forks the daemon D, X exits and is reaped: D is an orphan
// adopted by PID 1, in the session and group X, whose leader is gone. D checks that its pid,
// parent (1), group and session never change and sends a heartbeat through a pipe; the
// parent's progress counts them (and fails on a FAIL from D or when D dies).
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "workload_status.h"

struct beat {
  uint64_t n;
  char fail[120];
};

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  int p[2];
  if (pipe(p) < 0) return 1;
  pid_t leader = fork();
  if (leader == 0) {
    close(p[0]);
    setsid();
    if (fork() == 0) {
      prctl(PR_SET_NAME, "daemon");
      const pid_t me = getpid(), sid = getsid(0), pgid = getpgrp();
      struct beat b;
      memset(&b, 0, sizeof b);
      ws_sleep_ms(50);  // until X is gone
      const pid_t parent = getppid();
      for (;;) {
        ++b.n;
        if (getpid() != me || getsid(0) != sid || getpgrp() != pgid || getppid() != parent || sid == getsid(getppid()))
          snprintf(b.fail, sizeof b.fail, "ids changed: pid %d/%d sid %d/%d pgid %d/%d ppid %d/%d", (int)me,
                   (int)getpid(), (int)sid, (int)getsid(0), (int)pgid, (int)getpgrp(), (int)parent, (int)getppid());
        if (write(p[1], &b, sizeof b) < 0) _exit(1);
        ws_sleep_ms(10);
      }
    }
    _exit(0);
  }
  close(p[1]);
  waitpid(leader, NULL, 0);
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  uint64_t beats = 0;
  for (;;) {
    struct beat b;
    while (read(p[0], &b, sizeof b) == (ssize_t)sizeof b) {
      if (b.fail[0]) ws_failf("daemon: %s", b.fail);
      beats = b.n;
    }
    int status;
    pid_t dead = waitpid(-1, &status, WNOHANG);
    if (dead > 0) ws_failf("the daemon %d ended (status %#x)", (int)dead, status);
    ws_write(beats);
    ws_sleep_ms(10);
  }
}
