// The workload protocol, shared by the C/C++ workloads (header only: the CMake glob builds
// every .c/.cc here as its own program, so shared code lives in this header).
//
// argv[1] is an absolute status-file path. Each iteration the workload checks its own
// invariants and writes "ok <progress>\n" (progress strictly increases over the workload's
// whole life, across checkpoint and restore) or, once any check failed, "FAIL <reason>\n"
// forever. Writes are atomic: "<path>.tmp" is written, then given a second name that is
// renamed over the path. The .tmp name itself stays until the next write unlinks it and
// creates a fresh one, so a checkpoint taken while the .tmp file is open (between open and
// close) can always reopen it by name when the original process is gone.
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char ws_path[4096];
static char ws_tmp[4200];
static char ws_new[4200];
static char ws_fail[512];  // first failure reason; sticky

// Parses argv[1]; exits with 2 and a usage line when it is missing or not absolute.
static inline void ws_init(int argc, char** argv, int min_args, const char* usage) {
  if (argc < 1 + min_args || argv[1][0] != '/' || strlen(argv[1]) >= sizeof ws_path) {
    fprintf(stderr, "usage: %s %s\n", argc > 0 ? argv[0] : "workload", usage);
    exit(2);
  }
  snprintf(ws_path, sizeof ws_path, "%s", argv[1]);
  snprintf(ws_tmp, sizeof ws_tmp, "%s.tmp", argv[1]);
  snprintf(ws_new, sizeof ws_new, "%s.new", argv[1]);
}

static inline int ws_failed(void) { return ws_fail[0] != 0; }

// Records the first failure (later ones are dropped: the first is the cause).
__attribute__((format(printf, 1, 2))) static inline void ws_failf(const char* fmt, ...) {
  if (ws_failed()) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ws_fail, sizeof ws_fail, fmt, ap);
  va_end(ap);
  if (!ws_fail[0]) snprintf(ws_fail, sizeof ws_fail, "unknown failure");
  for (char* p = ws_fail; *p; ++p)
    if (*p == '\n') *p = ' ';
}

// Writes the status with plain syscalls (no stdio buffers, no allocation).
static inline void ws_write(unsigned long long progress) {
  char buf[600];
  int n = ws_failed() ? snprintf(buf, sizeof buf, "FAIL %s\n", ws_fail)
                      : snprintf(buf, sizeof buf, "ok %llu\n", progress);
  if (n < 0 || n >= (int)sizeof buf) n = (int)sizeof buf - 1;
  // A fresh inode each time (no O_TRUNC: the status file shares the previous .tmp's inode).
  unlink(ws_tmp);
  int fd = open(ws_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return;  // nothing to report through; try again next iteration
  ssize_t w = write(fd, buf, (size_t)n);
  close(fd);
  if (w != n) return;
  unlink(ws_new);
  if (link(ws_tmp, ws_new) == 0) rename(ws_new, ws_path);
}

// Writes "<word>\n" to path, a file that tells the test a step is done (STATUS.reaped, ...).
static inline void ws_tell(const char* path, const char* word) {
  FILE* f = fopen(path, "w");
  if (f) {
    fprintf(f, "%s\n", word);
    fclose(f);
  }
}

// Sleeps ms milliseconds, resuming after signal handlers (EINTR is not a failure here).
static inline void ws_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

static inline double ws_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
