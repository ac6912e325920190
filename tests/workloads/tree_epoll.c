// tree_epoll: one epoll shared by a parent and its child, with items each added: the parent
// adds its pipe's read end (data 111) before fork; after fork the child adds a socket of its
// own (data 222, a file the parent never had), and the parent an eventfd of its own (data
// 333, a file the child never had). Each iteration the parent writes to its pipe and the
// child to its socket; the child waits on the epoll, reads what it reports and counts it
// (shared memory), and modifies its socket's item by its fd number (the item must be keyed
// by that number). The parent checks, every 100 iterations, that the child saw both the pipe
// and the socket move, and itself polls the epoll for its eventfd. Progress: the parent's
// count of its own eventfd events seen through the shared epoll.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "workload_status.h"

struct shared {
  volatile uint64_t pipe_events, socket_events;
  char failure[256];
};

static void child(int epfd, int pipe_read, struct shared* sh) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) {
    snprintf(sh->failure, sizeof sh->failure, "child: socketpair: %s", strerror(errno));
    return;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 222};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, sv[0], &ev) < 0) {
    snprintf(sh->failure, sizeof sh->failure, "child: add its socket: %s", strerror(errno));
    return;
  }
  for (;;) {
    if (write(sv[1], "s", 1) != 1) {
      snprintf(sh->failure, sizeof sh->failure, "child: write its socket: %s", strerror(errno));
      return;
    }
    struct epoll_event got[8];
    int n = epoll_wait(epfd, got, 8, 1000);
    if (n < 0 && errno != EINTR) {
      snprintf(sh->failure, sizeof sh->failure, "child: epoll_wait: %s", strerror(errno));
      return;
    }
    char buf[256];
    for (int i = 0; i < n; ++i) {
      if (got[i].data.u64 == 111) {
        if (read(pipe_read, buf, sizeof buf) > 0) ++sh->pipe_events;
      } else if (got[i].data.u64 == 222) {
        if (read(sv[0], buf, sizeof buf) > 0) ++sh->socket_events;
      } else if (got[i].data.u64 != 333) {
        snprintf(sh->failure, sizeof sh->failure, "child: an event with unknown data %llu",
                 (unsigned long long)got[i].data.u64);
        return;
      }
    }
    ev.events = EPOLLIN;
    ev.data.u64 = 222;
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, sv[0], &ev) < 0) {
      snprintf(sh->failure, sizeof sh->failure, "child: modify its socket's item by fd %d: %s", sv[0], strerror(errno));
      return;
    }
    ws_sleep_ms(10);
  }
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  struct shared* sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  int pp[2];
  if (sh == MAP_FAILED || epfd < 0 || pipe2(pp, O_NONBLOCK) < 0) return 1;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 111};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, pp[0], &ev) < 0) return 1;
  pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(pp[1]);
    child(epfd, pp[0], sh);
    for (;;) pause();  // the parent reports the failure
  }
  int efd = eventfd(0, EFD_NONBLOCK);
  ev.events = EPOLLIN;
  ev.data.u64 = 333;
  if (efd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev) < 0) ws_failf("parent: add its eventfd: %s", strerror(errno));
  uint64_t own_events = 0, last_pipe = 0, last_socket = 0;
  for (unsigned long long iter = 1;; ++iter) {
    if (write(pp[1], "p", 1) != 1 && errno != EAGAIN) ws_failf("parent: write its pipe: %s", strerror(errno));
    uint64_t one = 1;
    if (write(efd, &one, sizeof one) != sizeof one) ws_failf("parent: write its eventfd: %s", strerror(errno));
    // The child may take an event of ours first (level-triggered, it stays): look until we see it.
    struct epoll_event got[8];
    int n = epoll_wait(epfd, got, 8, 0);
    for (int i = 0; i < n; ++i)
      if (got[i].data.u64 == 333) {
        uint64_t count;
        if (read(efd, &count, sizeof count) == sizeof count) ++own_events;
      }
    if (sh->failure[0]) ws_failf("%s", sh->failure);
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) ws_failf("the child (pid %d) is gone (status %#x)", pid, status);
    // Counted in our iterations, not in time: a restore is no gap for either of us.
    if (iter % 100 == 0) {
      if (sh->pipe_events == last_pipe) ws_failf("the child saw no pipe event in 100 iterations");
      if (sh->socket_events == last_socket) ws_failf("the child saw no socket event in 100 iterations");
      last_pipe = sh->pipe_events;
      last_socket = sh->socket_events;
    }
    ws_write(own_events);
    ws_sleep_ms(10);
  }
}
