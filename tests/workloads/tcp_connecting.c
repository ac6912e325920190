// tcp_connecting: TCP connections still being made (SYN_SENT) when the dump comes: a
// non-blocking connect() the main thread polls and a blocking connect() in a second thread,
// both to 10.66.0.2:7070, which nobody answers yet: that address is routed to a veth pair of
// the job's own (its network namespace's), to a permanent neighbour entry whose hardware
// address nobody has, so the SYNs go out and are dropped at the far end. Each iteration checks that both are still connecting. Once
// the file STATUS.answer exists, the job puts 10.66.0.2 on loopback and listens there: the
// SYNs sent again reach it, both connections complete and carry a line each way, and it
// writes "connected" to STATUS.connected. Run in a network namespace of its own (a
// container). Progress: the iteration count.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "workload_status.h"

#define PORT 7070

static struct sockaddr_in target;
static volatile int blocking_result = 1;  // 1: still in connect(); else its return value
static volatile int blocking_errno;
static int blocking_fd = -1;

static void* connect_blocking(void* arg) {
  (void)arg;
  int rc = connect(blocking_fd, (struct sockaddr*)&target, sizeof target);
  blocking_errno = errno;
  blocking_result = rc;
  return NULL;
}

static int tcp_state(int s) {
  struct tcp_info info;
  socklen_t len = sizeof info;
  memset(&info, 0, sizeof info);
  if (getsockopt(s, IPPROTO_TCP, TCP_INFO, &info, &len) < 0) return -1;
  return info.tcpi_state;
}

static int local_port(int s) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  return getsockname(s, (struct sockaddr*)&a, &len) == 0 ? ntohs(a.sin_port) : -1;
}

static int peer_port(int s) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  return getpeername(s, (struct sockaddr*)&a, &len) == 0 ? ntohs(a.sin_port) : -2;
}

// One line each way on client's connection, through whichever of the accepted ones is its
// other end.
static void talk(int client, const int accepted[2], const char* who) {
  int server = peer_port(accepted[0]) == local_port(client) ? accepted[0] : accepted[1];
  if (peer_port(server) != local_port(client)) {
    ws_failf("%s: no accepted connection comes from its port %d", who, local_port(client));
    return;
  }
  char buf[32] = {0};
  if (write(client, "ping\n", 5) != 5 || read(server, buf, sizeof buf - 1) != 5 || strcmp(buf, "ping\n") != 0)
    ws_failf("%s: the line to the listener did not arrive", who);
  memset(buf, 0, sizeof buf);
  if (write(server, "pong\n", 5) != 5 || read(client, buf, sizeof buf - 1) != 5 || strcmp(buf, "pong\n") != 0)
    ws_failf("%s: the line back did not arrive", who);
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  char answer_path[4200], connected_path[4200];
  snprintf(answer_path, sizeof answer_path, "%s.answer", argv[1]);
  snprintf(connected_path, sizeof connected_path, "%s.connected", argv[1]);
  if (system("/sbin/ip link set lo up && /sbin/ip link add sc0 type veth peer name sc1 && "
             "/sbin/ip addr add 10.66.0.1/24 dev sc0 && /sbin/ip link set sc0 up && /sbin/ip link set sc1 up && "
             "/sbin/ip neigh add 10.66.0.2 lladdr 02:00:00:00:66:02 dev sc0 nud permanent") != 0)
    ws_failf("could not make the veth pair");
  target.sin_family = AF_INET;
  target.sin_port = htons(PORT);
  inet_pton(AF_INET, "10.66.0.2", &target.sin_addr);

  int polled = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (connect(polled, (struct sockaddr*)&target, sizeof target) == 0 || errno != EINPROGRESS)
    ws_failf("non-blocking connect: %s", strerror(errno));
  blocking_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  pthread_t thread;
  pthread_create(&thread, NULL, connect_blocking, NULL);

  int answered = 0, listener = -1, done = 0;
  for (unsigned long long iter = 1;; ++iter) {
    struct stat st;
    if (!ws_failed() && !answered && stat(answer_path, &st) == 0) {
      answered = 1;
      if (system("/sbin/ip addr add 10.66.0.2/32 dev lo") != 0) ws_failf("could not put 10.66.0.2 on loopback");
      listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (bind(listener, (struct sockaddr*)&target, sizeof target) < 0 || listen(listener, 8) < 0)
        ws_failf("listen at 10.66.0.2:%d: %s", PORT, strerror(errno));
    }
    if (!ws_failed() && !answered) {
      if (tcp_state(polled) != 2) ws_failf("the polled connection is in state %d, not connecting", tcp_state(polled));
      if (blocking_result != 1)
        ws_failf("the blocking connect() returned %d (%s) before anyone answered", blocking_result,
                 strerror(blocking_errno));
    }
    if (!ws_failed() && answered && !done) {
      struct pollfd p = {polled, POLLOUT, 0};
      if (poll(&p, 1, 0) == 1 && blocking_result != 1) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(polled, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) ws_failf("the polled connection failed: %s", strerror(err));
        if (blocking_result != 0) ws_failf("the blocking connect() failed: %s", strerror(blocking_errno));
        if (!ws_failed()) {
          int flags = fcntl(polled, F_GETFL);
          fcntl(polled, F_SETFL, flags & ~O_NONBLOCK);
          int accepted[2];
          for (int i = 0; i < 2; ++i)
            if ((accepted[i] = accept(listener, NULL, NULL)) < 0) ws_failf("accept: %s", strerror(errno));
          if (!ws_failed()) {
            talk(polled, accepted, "polled");
            talk(blocking_fd, accepted, "blocking");
          }
        }
        done = 1;
        if (!ws_failed()) ws_tell(connected_path, "connected");
      }
    }
    ws_write(iter);
    ws_sleep_ms(10);
  }
}
