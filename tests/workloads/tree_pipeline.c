// tree_pipeline: a process tree shaped like a shell running a pipeline and a daemon, which
// checks its own state across checkpoint and restore:
//   parent (writes the status file)
//   +- producer: leader of a new process group; writes 4-byte sequence numbers into pipe A
//   |            as fast as the pipe takes them (A is full most of the time: data in flight)
//   +- filter:   in the producer's group; reads A, checks the sequence, writes 3x+1 into B,
//   |            slowly, so that B holds data too
//   +- consumer: in the producer's group; reads B, checks every value, reports its count
//   +- daemon:   setsid() (a session of its own), two threads counting
// Every child checks that its pid, parent, process group and session never change, and sends
// "FAIL reason" or progress to the parent through a report pipe (fixed-size records, atomic).
// The parent fails when a child dies. Progress is the consumer's count of checked values.
// argv[2] (optional): a file where the parent writes the children's pids, one a line.
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "workload_status.h"

struct report {
  char fail;  // 1: text is a failure reason; 0: value is the consumer's progress
  char who[15];
  uint64_t value;
  char text[200];
};

static int report_fd = -1;
static const char* who = "parent";

static void send_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void send_fail(const char* fmt, ...) {
  struct report r;
  memset(&r, 0, sizeof r);
  r.fail = 1;
  snprintf(r.who, sizeof r.who, "%s", who);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r.text, sizeof r.text, fmt, ap);
  va_end(ap);
  if (write(report_fd, &r, sizeof r) < 0) {
  }
  for (;;) pause();  // stays, so the parent does not also see it die
}

static void send_progress(uint64_t value) {
  struct report r;
  memset(&r, 0, sizeof r);
  r.value = value;
  if (write(report_fd, &r, sizeof r) < 0) {
  }
}

struct ids {
  pid_t pid, ppid, pgid, sid;
};
static struct ids mine;
static struct ids now(void) {
  struct ids i = {getpid(), getppid(), getpgrp(), getsid(0)};
  return i;
}
static void check_ids(void) {
  struct ids n = now();
  if (n.pid != mine.pid || n.ppid != mine.ppid || n.pgid != mine.pgid || n.sid != mine.sid)
    send_fail("ids changed: pid %d->%d ppid %d->%d pgid %d->%d sid %d->%d", mine.pid, n.pid, mine.ppid, n.ppid,
              mine.pgid, n.pgid, mine.sid, n.sid);
}

static void read_full(int fd, void* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = read(fd, (char*)buf + got, n - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) send_fail("read: %s", k == 0 ? "end of file" : strerror(errno));
    got += (size_t)k;
  }
}

static void write_full(int fd, const void* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t k = write(fd, (const char*)buf + done, n - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) send_fail("write: %s", strerror(errno));
    done += (size_t)k;
  }
}

static void producer(int out) {
  uint32_t next = 0;
  for (;;) {
    uint32_t batch[256];
    for (int i = 0; i < 256; ++i) batch[i] = next++;
    write_full(out, batch, sizeof batch);
    check_ids();
  }
}

static void filter(int in, int out) {
  uint32_t expect = 0;
  for (;;) {
    uint32_t batch[64];
    read_full(in, batch, sizeof batch);
    for (int i = 0; i < 64; ++i) {
      if (batch[i] != expect) send_fail("pipe A: got %u, expected %u", batch[i], expect);
      ++expect;
      batch[i] = batch[i] * 3 + 1;
    }
    write_full(out, batch, sizeof batch);
    check_ids();
    ws_sleep_ms(1);
  }
}

static void consumer(int in) {
  uint32_t expect = 0;
  uint64_t count = 0;
  for (;;) {
    uint32_t batch[16];
    read_full(in, batch, sizeof batch);
    for (int i = 0; i < 16; ++i) {
      if (batch[i] != expect * 3 + 1) send_fail("pipe B: got %u, expected %u", batch[i], expect * 3 + 1);
      ++expect;
      ++count;
    }
    check_ids();
    if (count % 256 == 0) send_progress(count);
    ws_sleep_ms(2);
  }
}

static volatile uint64_t ticks[2];
static void* daemon_thread(void* arg) {
  int k = (int)(intptr_t)arg;
  for (;;) {
    ++ticks[k];
    ws_sleep_ms(5);
  }
  return NULL;
}

static void daemon_process(void) {
  if (setsid() < 0) send_fail("setsid: %s", strerror(errno));
  mine = now();
  pthread_t t;
  if (pthread_create(&t, NULL, daemon_thread, (void*)(intptr_t)1) != 0) send_fail("pthread_create");
  uint64_t last[2] = {0, 0};
  for (;;) {
    ws_sleep_ms(50);
    check_ids();
    ++ticks[0];
    uint64_t t1 = ticks[1];
    if (t1 < last[1]) send_fail("thread counter went back from %llu to %llu", (unsigned long long)last[1],
                                (unsigned long long)t1);
    last[1] = t1;
  }
}

static pid_t start(const char* name, void (*body)(int, int), int a, int b, int close_a, int close_b) {
  pid_t pid = fork();
  if (pid < 0) ws_failf("fork %s: %s", name, strerror(errno));
  if (pid == 0) {
    who = name;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NAME, name);
    if (close_a >= 0) close(close_a);
    if (close_b >= 0) close(close_b);
    body(a, b);
    _exit(0);
  }
  return pid;
}

static pid_t group;  // the producer's pid: the pipeline's process group
static void run_producer(int a, int b) {
  (void)b;
  setpgid(0, 0);
  mine = now();
  producer(a);
}
static void run_filter(int a, int b) {
  while (setpgid(0, group) < 0) ws_sleep_ms(1);
  mine = now();
  filter(a, b);
}
static void run_consumer(int a, int b) {
  (void)b;
  while (setpgid(0, group) < 0) ws_sleep_ms(1);
  mine = now();
  consumer(a);
}
static void run_daemon(int a, int b) {
  (void)a;
  (void)b;
  daemon_process();
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE [PIDS_FILE]");
  int rep[2], pa[2], pb[2];
  if (pipe(rep) < 0 || pipe(pa) < 0 || pipe(pb) < 0) return 1;
  report_fd = rep[1];
  group = start("producer", run_producer, pa[1], -1, pa[0], rep[0]);
  pid_t f = start("filter", run_filter, pa[0], pb[1], pa[1], rep[0]);
  pid_t c = start("consumer", run_consumer, pb[0], -1, pb[1], rep[0]);
  pid_t d = start("daemon", run_daemon, -1, -1, rep[0], -1);
  // The pipes are the children's alone, as a shell leaves them.
  close(pa[0]);
  close(pa[1]);
  close(pb[0]);
  close(pb[1]);
  close(rep[1]);
  if (argc > 2) {
    FILE* out = fopen(argv[2], "w");
    if (out) {
      fprintf(out, "%d\n%d\n%d\n%d\n", (int)group, (int)f, (int)c, (int)d);
      fclose(out);
    }
  }
  fcntl(rep[0], F_SETFL, O_NONBLOCK);
  mine = now();
  uint64_t progress = 0;
  for (;;) {
    struct report r;
    ssize_t n;
    while ((n = read(rep[0], &r, sizeof r)) == (ssize_t)sizeof r) {
      if (r.fail) ws_failf("%s: %s", r.who, r.text);
      else if (r.value <= progress) ws_failf("consumer progress went from %llu to %llu", (unsigned long long)progress,
                                             (unsigned long long)r.value);
      else progress = r.value;
    }
    int status;
    pid_t dead = waitpid(-1, &status, WNOHANG);
    if (dead > 0) ws_failf("child %d ended (status %#x)", (int)dead, status);
    struct ids i = now();
    // (Its own parent may change: a `dump --pid` root is restored under our init.)
    if (i.pid != mine.pid) ws_failf("parent's pid changed from %d to %d", (int)mine.pid, (int)i.pid);
    ws_write(progress);
    ws_sleep_ms(10);
  }
}
