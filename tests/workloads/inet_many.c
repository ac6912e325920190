// inet_many: a TCP echo server holding many connections (for bench/tcp_bench).
//   inet_many STATUS PORT N
// Listens on 127.0.0.1:PORT, accepts N connections, then echoes whatever any of them sends;
// its first "ok" comes once all N are accepted.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 3, "STATUS PORT N");
  const int port = atoi(argv[2]);
  const int n = atoi(argv[3]);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(l, (struct sockaddr*)&a, sizeof a) < 0 || listen(l, 4096) < 0) {
    perror("inet_many: bind/listen");
    return 1;
  }
  struct pollfd* fds = calloc((size_t)n + 1, sizeof *fds);
  for (int i = 0; i < n; ++i) {
    int c = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    if (c < 0) {
      perror("inet_many: accept");
      return 1;
    }
    fds[i].fd = c;
    fds[i].events = POLLIN;
  }
  char buf[4096];
  for (unsigned long long it = 1;; ++it) {
    if (n > 0 && poll(fds, (nfds_t)n, 20) > 0) {
      for (int i = 0; i < n; ++i) {
        if (!(fds[i].revents & POLLIN)) continue;
        ssize_t r = read(fds[i].fd, buf, sizeof buf);
        if (r > 0 && write(fds[i].fd, buf, (size_t)r) != r) ws_failf("echo: %s", strerror(errno));
        if (r == 0) ws_failf("connection %d closed", i);
      }
    } else if (n == 0) {
      ws_sleep_ms(20);
    }
    ws_write(it);
  }
}
