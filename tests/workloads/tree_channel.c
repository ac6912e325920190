// tree_channel: a parent and a child talking over a unix socketpair whose ends are held as
// nginx holds its master/worker channel: the parent keeps both ends, the child (forked after)
// keeps only the second. Each iteration the parent sends a sequence number on the first end,
// the child answers with 3n+1 on the second, and the parent checks the answer; so both
// processes' ends must still be one connection after a restore. Also a second, unrelated pair
// held by the child alone, through which the child talks to itself. Progress = answers.
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "workload_status.h"

static int read_u64(int fd, uint64_t* v, int timeout_ms) {
  struct pollfd p = {fd, POLLIN, 0};
  int rc;
  do rc = poll(&p, 1, timeout_ms);
  while (rc < 0 && errno == EINTR);
  if (rc != 1) return -1;
  ssize_t n;
  do n = read(fd, v, sizeof *v);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t)sizeof *v ? 0 : -1;
}

static void child(int end) {
  int own[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, own) < 0) _exit(3);
  for (uint64_t k = 0;; ++k) {
    uint64_t n, echo;
    if (read_u64(end, &n, -1) < 0) _exit(4);  // the parent's end is gone
    if (write(own[0], &k, sizeof k) != sizeof k || read_u64(own[1], &echo, 1000) < 0 || echo != k) _exit(5);
    n = 3 * n + 1;
    if (write(end, &n, sizeof n) != sizeof n) _exit(6);
  }
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 0, "tree_channel STATUS");
  int ch[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, ch) < 0) ws_failf("socketpair: %s", strerror(errno));
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(ch[0]);
    child(ch[1]);
  }
  // The parent keeps ch[1] open too, as nginx's master does.
  for (uint64_t n = 1;; ++n) {
    if (!ws_failed()) {
      uint64_t answer = 0;
      int status;
      if (write(ch[0], &n, sizeof n) != sizeof n) {
        ws_failf("send %llu to the child: %s", (unsigned long long)n, strerror(errno));
      } else if (read_u64(ch[0], &answer, 5000) < 0) {
        ws_failf("no answer from the child to %llu%s", (unsigned long long)n,
                 waitpid(pid, &status, WNOHANG) == pid ? " (it exited)" : "");
      } else if (answer != 3 * n + 1) {
        ws_failf("answer %llu to %llu", (unsigned long long)answer, (unsigned long long)n);
      }
    }
    ws_write(n);
    ws_sleep_ms(10);
  }
}
