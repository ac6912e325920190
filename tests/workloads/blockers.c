// blockers: threads that spend their time blocked in system calls, so that a checkpoint
// catches them there and the restore must resume the calls correctly:
//   sleeper  nanosleep(1 s) in a loop: must return 0 (no EINTR) after at least ~1 s
//   reader   read() of 8-byte sequence numbers from a pipe: must get consecutive numbers
//   writer   writes the next sequence number to the pipe every 200 ms
//   condwait pthread_cond_wait for a generation counter bumped by condsig every 200 ms; the
//            two hand off, so each wake must see exactly the next generation
//   futex    raw FUTEX_WAIT on a word that futex-waker increments every 200 ms
// The main thread checks every 20 ms that each blocked thread keeps making progress.
// Progress is the sum of all completed waits.
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>

#include "workload_status.h"

static _Atomic unsigned long long sleeps, reads, cond_wakes, futex_wakes;
static int pipe_fds[2];

static void* sleeper(void* arg) {
  (void)arg;
  for (;;) {
    double t0 = ws_monotonic();
    struct timespec ts = {1, 0};
    if (nanosleep(&ts, NULL) != 0) ws_failf("nanosleep returned -1, errno %d (%s)", errno, strerror(errno));
    double dt = ws_monotonic() - t0;
    if (dt < 0.95) ws_failf("nanosleep(1 s) returned after %.3f s", dt);
    atomic_fetch_add(&sleeps, 1);
  }
  return NULL;
}

static void* writer(void* arg) {
  (void)arg;
  for (uint64_t seq = 1;; ++seq) {
    ssize_t n = write(pipe_fds[1], &seq, sizeof seq);
    if (n != sizeof seq) ws_failf("pipe write returned %zd, errno %d (%s)", n, errno, strerror(errno));
    ws_sleep_ms(200);
  }
  return NULL;
}

static void* reader(void* arg) {
  (void)arg;
  uint64_t expect = 1;
  for (;;) {
    uint64_t seq = 0;
    ssize_t n = read(pipe_fds[0], &seq, sizeof seq);
    if (n != sizeof seq) {
      ws_failf("pipe read returned %zd, errno %d (%s)", n, errno, strerror(errno));
      ws_sleep_ms(200);
      continue;
    }
    if (seq != expect) ws_failf("pipe sequence: got %llu, expected %llu", (unsigned long long)seq,
                                (unsigned long long)expect);
    expect = seq + 1;
    atomic_fetch_add(&reads, 1);
  }
  return NULL;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bumped = PTHREAD_COND_INITIALIZER, acked = PTHREAD_COND_INITIALIZER;
static unsigned long long generation, acknowledged;

static void* condsig(void* arg) {
  (void)arg;
  for (;;) {
    ws_sleep_ms(200);
    pthread_mutex_lock(&mu);
    ++generation;
    pthread_cond_signal(&bumped);
    while (acknowledged != generation) pthread_cond_wait(&acked, &mu);
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

static void* condwait(void* arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  for (unsigned long long seen = 0;;) {
    while (generation == seen) pthread_cond_wait(&bumped, &mu);
    if (generation != seen + 1) ws_failf("condvar: generation %llu after %llu", generation, seen);
    seen = generation;
    acknowledged = seen;
    pthread_cond_signal(&acked);
    atomic_fetch_add(&cond_wakes, 1);
  }
  return NULL;
}

static _Atomic uint32_t futex_word;

static void* futex_waker(void* arg) {
  (void)arg;
  for (;;) {
    ws_sleep_ms(200);
    atomic_fetch_add(&futex_word, 1);
    syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  }
  return NULL;
}

static void* futex_waiter(void* arg) {
  (void)arg;
  uint32_t seen = atomic_load(&futex_word);
  for (;;) {
    long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
    if (r < 0 && errno == EINTR) ws_failf("FUTEX_WAIT returned EINTR");
    if (r < 0 && errno != EAGAIN && errno != EINTR) ws_failf("FUTEX_WAIT: errno %d (%s)", errno, strerror(errno));
    uint32_t now = atomic_load(&futex_word);
    if (now < seen) ws_failf("futex word went backwards: %u after %u", now, seen);
    if (now != seen) {
      seen = now;
      atomic_fetch_add(&futex_wakes, 1);
    }
  }
  return NULL;
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  if (pipe(pipe_fds) < 0) {
    perror("pipe");
    return 1;
  }
  void* (*fns[])(void*) = {sleeper, writer, reader, condsig, condwait, futex_waker, futex_waiter};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; ++i) {
    pthread_t t;
    if (pthread_create(&t, NULL, fns[i], NULL) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      return 1;
    }
  }
  // Stall limits in main-loop iterations of 20 ms (they stop while the process is frozen).
  const char* names[] = {"sleeper", "pipe reader", "condvar waiter", "futex waiter"};
  _Atomic unsigned long long* counters[] = {&sleeps, &reads, &cond_wakes, &futex_wakes};
  unsigned long long last[4] = {0}, stalled[4] = {0};
  const unsigned long long limit[4] = {400, 250, 250, 250};
  unsigned long long last_progress = 0;
  for (unsigned long long iter = 1;; ++iter) {
    ws_sleep_ms(20);
    unsigned long long sum = 0;
    for (int i = 0; i < 4; ++i) {
      unsigned long long c = atomic_load(counters[i]);
      if (c == last[i] && ++stalled[i] > limit[i]) ws_failf("%s made no progress for %llu iterations", names[i], stalled[i]);
      if (c != last[i]) stalled[i] = 0;
      last[i] = c;
      sum += c;
    }
    // Progress: completed waits, plus the main loop's own count so it rises every write.
    unsigned long long progress = sum * 1000000ULL + iter;
    if (progress <= last_progress) progress = last_progress + 1;
    last_progress = progress;
    ws_write(progress);
  }
}
