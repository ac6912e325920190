// inet_halfclosed: a TCP server with three half-closed connections of a client of the test's.
//   inet_halfclosed STATUS IP PORT
// Listens on IP:PORT and accepts three connections, in the order the test makes them:
//   A: the client sent A_BYTES bytes of the pattern (byte i is i % 251) and shut down for
//      writing (here CLOSE_WAIT). The server sends a counter (8 bytes, little endian, from 0)
//      each iteration and reads nothing until STATUS.go exists; then it reads A: the pattern,
//      whole, then end of stream, and shuts down for writing (the client then sees the end
//      after the last counter) and closes.
//   B: the server sent B_BYTES bytes of the pattern and shut down for writing at once (here
//      FIN_WAIT2 once the client acknowledged the FIN). The client sends counters, which the
//      server reads each iteration and checks, until the client's end of stream; then it
//      closes.
//   C: the client sent C_IN bytes of the pattern and shut down for writing, with a small
//      receive buffer and reading nothing; the server reads them and the end, then writes
//      C_OUT bytes of the pattern and shuts down for writing: they and its FIN wait, most of
//      them never sent (LAST_ACK with unsent data).
// Each connection that ends as it must is appended to STATUS.results ("A ok", ...). Any
// byte out of place, an end of stream too early or an error (a reset) is a FAIL.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "workload_status.h"

#define A_BYTES 3000
#define B_BYTES 5000
#define C_IN 100
#define C_OUT (1 << 20)

static char results_path[4200];
static char go_path[4200];

static void result(const char* what) {
  FILE* f = fopen(results_path, "a");
  if (!f) return;
  fprintf(f, "%s ok\n", what);
  fclose(f);
}

static int must(int rc, const char* what) {
  if (rc < 0) {
    fprintf(stderr, "inet_halfclosed: %s: %s\n", what, strerror(errno));
    exit(1);
  }
  return rc;
}

// Reads what is there of s (non-blocking) and checks it against the pattern from *at;
// returns 1 at the end of stream, 0 otherwise.
static int read_pattern(int s, size_t* at, const char* name) {
  for (;;) {
    unsigned char buf[4096];
    ssize_t n = recv(s, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return 1;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return 0;
      ws_failf("%s: recv: %s", name, strerror(errno));
      return 0;
    }
    for (ssize_t i = 0; i < n; ++i, ++*at)
      if (buf[i] != *at % 251) {
        ws_failf("%s: byte %zu is %u, not %zu", name, *at, buf[i], *at % 251);
        return 0;
      }
  }
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 3, "STATUS IP PORT");
  snprintf(results_path, sizeof results_path, "%s.results", argv[1]);
  snprintf(go_path, sizeof go_path, "%s.go", argv[1]);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)atoi(argv[3]));
  inet_pton(AF_INET, argv[2], &addr.sin_addr);
  int l = must(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), "socket");
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  must(bind(l, (struct sockaddr*)&addr, sizeof addr), "bind");
  must(listen(l, 8), "listen");

  // The three connections, accepted as they come (the listener is up before the first status).
  int a = -1, b = -1, c = -1;
  size_t a_read = 0, c_in = 0, c_out = 0;
  uint64_t a_sent = 0, b_expected = 0;
  unsigned char b_partial[8];
  size_t b_partial_len = 0;
  int a_done = 0, b_done = 0, c_shut = 0, c_read_done = 0;
  static unsigned char pattern[C_OUT];
  for (size_t i = 0; i < sizeof pattern; ++i) pattern[i] = (unsigned char)(i % 251);

  for (unsigned long long iter = 1;; ++iter) {
    int* next = a < 0 ? &a : b < 0 ? &b : c < 0 ? &c : NULL;
    if (next) {
      int s = accept4(l, NULL, NULL, SOCK_NONBLOCK);
      if (s >= 0) {
        *next = s;
        if (next == &b) {
          // B: the pattern, then FIN at once.
          if (send(b, pattern, B_BYTES, MSG_NOSIGNAL) != B_BYTES) ws_failf("B: send the pattern: %s", strerror(errno));
          if (shutdown(b, SHUT_WR) < 0) ws_failf("B: shutdown: %s", strerror(errno));
        } else if (next == &c) {
          int big = 4 << 20;
          setsockopt(c, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        }
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        ws_failf("accept: %s", strerror(errno));
      }
    }

    // A: a counter each iteration until the go; then its data and end.
    if (a >= 0 && !a_done) {
      if (access(go_path, F_OK) == 0) {
        if (read_pattern(a, &a_read, "A")) {
          if (a_read != A_BYTES) ws_failf("A: end of stream after %zu bytes, not %d", a_read, A_BYTES);
          else if (shutdown(a, SHUT_WR) < 0) ws_failf("A: shutdown: %s", strerror(errno));
          else result("A");
          close(a);
          a_done = 1;
        }
      } else {
        unsigned char word[8];
        for (int k = 0; k < 8; ++k) word[k] = (unsigned char)(a_sent >> (8 * k));
        ssize_t n = send(a, word, sizeof word, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)sizeof word) ++a_sent;
        else if (n >= 0) ws_failf("A: short send of a counter");
        else if (errno != EAGAIN) ws_failf("A: send counter %llu: %s", (unsigned long long)a_sent, strerror(errno));
      }
    }

    // B: the client's counters, in order, until its end of stream.
    if (b >= 0 && !b_done) {
      for (;;) {
        ssize_t n = recv(b, b_partial + b_partial_len, sizeof b_partial - b_partial_len, MSG_DONTWAIT);
        if (n == 0) {
          if (b_partial_len) ws_failf("B: end of stream in the middle of a counter");
          close(b);
          b_done = 1;
          if (!ws_failed()) result("B");
          break;
        }
        if (n < 0) {
          if (errno != EAGAIN && errno != EINTR) ws_failf("B: recv: %s", strerror(errno));
          break;
        }
        b_partial_len += (size_t)n;
        if (b_partial_len < sizeof b_partial) continue;
        uint64_t v = 0;
        for (int k = 0; k < 8; ++k) v |= (uint64_t)b_partial[k] << (8 * k);
        if (v != b_expected) ws_failf("B: counter %llu, expected %llu", (unsigned long long)v, (unsigned long long)b_expected);
        b_expected = v + 1;
        b_partial_len = 0;
      }
    }

    // C: the client's bytes and end, then ours and our end.
    if (c >= 0 && !c_shut) {
      if (!c_read_done && read_pattern(c, &c_in, "C")) {
        if (c_in != C_IN) ws_failf("C: end of stream after %zu bytes, not %d", c_in, C_IN);
        c_read_done = 1;
      }
      while (c_read_done && c_out < C_OUT) {
        ssize_t n = send(c, pattern + c_out, C_OUT - c_out, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
          if (errno != EAGAIN && errno != EINTR) ws_failf("C: send: %s", strerror(errno));
          break;
        }
        c_out += (size_t)n;
      }
      if (c_out == C_OUT) {
        if (shutdown(c, SHUT_WR) < 0) ws_failf("C: shutdown: %s", strerror(errno));
        c_shut = 1;
        result("C sent");
      }
    }
    ws_write(iter);
    ws_sleep_ms(10);
  }
}
