// outside_pipes: a filter in a shell pipeline (`producer | outside_pipes STATUS | consumer`):
// its stdin and stdout are pipes whose other ends are outside the job. stdin carries the
// pattern 'a' + k % 26 (k counting from 0), read 8 bytes per iteration; one byte 'o' is
// written to stdout per iteration. Both are non-blocking, SIGPIPE is ignored.
// Checked by the workload: every byte read is the pattern's next (none lost, repeated or
// changed); after end of file nothing more comes; after EPIPE no write succeeds again.
// STATUS.pipes holds "read K eof E written W epipe P" for the test, which knows what should
// have happened to the other ends (closed, or connected elsewhere by --inherit-fd).
#define _GNU_SOURCE
#include <signal.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  signal(SIGPIPE, SIG_IGN);
  if (fcntl(0, F_SETFL, O_NONBLOCK) < 0 || fcntl(1, F_SETFL, O_NONBLOCK) < 0) {
    fprintf(stderr, "outside_pipes: O_NONBLOCK on stdin/stdout: %s\n", strerror(errno));
    return 1;
  }
  char path[4200];
  snprintf(path, sizeof path, "%s.pipes", argv[1]);
  int report = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (report < 0) {
    fprintf(stderr, "outside_pipes: open %s: %s\n", path, strerror(errno));
    return 1;
  }
  unsigned long long nread = 0, written = 0;
  int eof = 0, epipe = 0;
  for (unsigned long long iter = 1;; ++iter) {
    char buf[8];
    ssize_t n = read(0, buf, sizeof buf);
    if (n > 0) {
      if (eof) ws_failf("stdin gave %zd bytes after end of file", n);
      for (ssize_t i = 0; i < n; ++i, ++nread)
        if (buf[i] != 'a' + (char)(nread % 26)) ws_failf("stdin byte %llu is %#x, not the pattern's", nread, buf[i] & 0xff);
    } else if (n == 0) {
      eof = 1;
    } else if (errno != EAGAIN) {
      ws_failf("read stdin: %s", strerror(errno));
    }
    if (write(1, "o", 1) == 1) {
      if (epipe) ws_failf("a write to stdout succeeded after EPIPE");
      ++written;
    } else if (errno == EPIPE) {
      epipe = 1;
    } else if (errno != EAGAIN) {
      ws_failf("write stdout: %s", strerror(errno));
    }
    char line[128];
    int len = snprintf(line, sizeof line, "read %20llu eof %d written %20llu epipe %d\n", nread, eof, written, epipe);
    if (pwrite(report, line, (size_t)len, 0) != len) ws_failf("write %s: %s", path, strerror(errno));
    ws_write(iter);
    ws_sleep_ms(10);
  }
}
