// unix_refused: holds a unix socket whose dump must be refused, and checks that it stays
// intact while the job runs on.
//   outside PATH  a stream socket connected to the listener at PATH (outside the job), which
//                 sends "ping" when it accepts: the ping must stay queued, unread
//   rights        a socketpair with a file descriptor in flight (SCM_RIGHTS, not received):
//                 "fd" and the fd stay queued
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 2, "STATUS_FILE outside PATH | rights");
  int s = -1;
  if (strcmp(argv[2], "outside") == 0 && argc > 3) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", argv[3]);
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr*)&a, sizeof a) < 0) {
      fprintf(stderr, "unix_refused: connect %s: %s\n", argv[3], strerror(errno));
      return 1;
    }
  } else if (strcmp(argv[2], "rights") == 0) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) return 1;
    int passed = open("/dev/null", O_RDONLY);
    char data[2] = {'f', 'd'};
    struct iovec iov = {data, 2};
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof control);
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    struct cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &passed, sizeof passed);
    if (sendmsg(sv[0], &m, 0) != 2) return 1;
    close(passed);
    s = sv[1];
  } else {
    fprintf(stderr, "unix_refused: unknown mode %s\n", argv[2]);
    return 2;
  }
  const char* expect = strcmp(argv[2], "rights") == 0 ? "fd" : "ping";
  for (unsigned long long i = 1;; ++i) {
    char buf[8];
    ssize_t n = recv(s, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    // The ping of the outside listener may not have come yet in the first iterations.
    if (n >= 0 && (n != (ssize_t)strlen(expect) || memcmp(buf, expect, (size_t)n) != 0))
      ws_failf("queued: %zd bytes, not '%s'", n, expect);
    if (n < 0 && (errno != EAGAIN || i > 100)) ws_failf("peek: %s", strerror(errno));
    ws_write(i);
    ws_sleep_ms(10);
  }
}
