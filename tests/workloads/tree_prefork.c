// tree_prefork: a pre-fork server's shape. The parent makes a listening TCP socket on
// 127.0.0.1:PORT, a MAP_SHARED counter page and a named FIFO (STATUS.fifo), then forks two
// workers that share the listener. Each worker opens the FIFO by its path for writing and
// writes a numbered line "W SEQ" into it every iteration, counts in the shared page, and
// accepts whatever connection comes to the listener. The parent reads the FIFO only every
// fifth iteration (so lines wait in it, as data in flight), checks that each worker's lines
// come one after the other with none lost or repeated, connects to the listener every 20
// iterations and checks that a worker accepted the previous connection. Progress: the lines
// read. With "removed", the parent removes the FIFO's name once both workers have it open (a
// private FIFO, alive unnamed). Run in a network namespace of its own (a container).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "workload_status.h"

#define PORT 7171
#define WORKERS 2

struct shared {
  volatile uint64_t count[WORKERS];
  volatile uint64_t accepted;
  char failure[256];
};

static void worker(int w, const char* fifo_path, int listener, struct shared* sh) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  int out = open(fifo_path, O_WRONLY | O_CLOEXEC);  // the parent holds it open for reading
  if (out < 0) {
    snprintf(sh->failure, sizeof sh->failure, "worker %d: open the FIFO: %s", w, strerror(errno));
    for (;;) pause();
  }
  for (unsigned long long seq = 1;; ++seq) {
    char line[64];
    int n = snprintf(line, sizeof line, "%d %llu\n", w, seq);
    if (write(out, line, (size_t)n) != n && !sh->failure[0])
      snprintf(sh->failure, sizeof sh->failure, "worker %d: write the FIFO: %s", w, strerror(errno));
    ++sh->count[w];
    int c = accept(listener, NULL, NULL);
    if (c >= 0) {
      __sync_fetch_and_add(&sh->accepted, 1);
      close(c);
    }
    ws_sleep_ms(10);
  }
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE [removed]");
  const int removed = argc > 2 && strcmp(argv[2], "removed") == 0;
  char fifo_path[4200];
  snprintf(fifo_path, sizeof fifo_path, "%s.fifo", argv[1]);
  unlink(fifo_path);
  if (mkfifo(fifo_path, 0600) < 0) ws_failf("mkfifo %s: %s", fifo_path, strerror(errno));
  int in = open(fifo_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct shared* sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(PORT);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (in < 0 || sh == MAP_FAILED || bind(listener, (struct sockaddr*)&a, sizeof a) < 0 || listen(listener, 16) < 0)
    ws_failf("set up: %s", strerror(errno));
  pid_t pids[WORKERS];
  for (int w = 0; w < WORKERS; ++w)
    if ((pids[w] = fork()) == 0) worker(w, fifo_path, listener, sh);

  if (removed) {
    while (!sh->failure[0] && (sh->count[0] == 0 || sh->count[1] == 0)) ws_sleep_ms(1);  // both have it open
    if (unlink(fifo_path) < 0) ws_failf("unlink %s: %s", fifo_path, strerror(errno));
  }
  unsigned long long next_seq[WORKERS] = {1, 1}, lines = 0, accepted_before = 0;
  char buf[8192];
  size_t have = 0;
  for (unsigned long long iter = 1;; ++iter) {
    if (sh->failure[0]) ws_failf("%s", sh->failure);
    for (int w = 0; w < WORKERS; ++w) {
      int status;
      if (waitpid(pids[w], &status, WNOHANG) == pids[w]) ws_failf("worker %d is gone (status %#x)", w, status);
    }
    if (iter % 5 == 0) {
      ssize_t n;
      while ((n = read(in, buf + have, sizeof buf - have - 1)) > 0) {
        have += (size_t)n;
        char* start = buf;
        char* nl;
        while ((nl = memchr(start, '\n', (size_t)(buf + have - start))) != NULL) {
          *nl = 0;
          int w = -1;
          unsigned long long seq = 0;
          if (sscanf(start, "%d %llu", &w, &seq) != 2 || w < 0 || w >= WORKERS) ws_failf("a bad line '%s'", start);
          else if (seq != next_seq[w])
            ws_failf("worker %d: line %llu, expected %llu (lost or repeated in the FIFO)", w, seq, next_seq[w]);
          else
            ++next_seq[w], ++lines;
          start = nl + 1;
        }
        have -= (size_t)(start - buf);
        memmove(buf, start, have);
      }
    }
    if (iter % 20 == 0) {
      if (iter > 20 && sh->accepted == accepted_before) ws_failf("no worker accepted the last connection");
      accepted_before = sh->accepted;
      int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (connect(c, (struct sockaddr*)&a, sizeof a) < 0) ws_failf("connect to the listener: %s", strerror(errno));
      close(c);
    }
    ws_write(lines);
    ws_sleep_ms(10);
  }
}
