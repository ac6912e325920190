// threads: 8 worker threads, each counting in its own counter; the main thread checks every
// 20 ms that no counter goes backwards, that each keeps progressing, and each worker checks
// that its kernel thread id never changes. Progress is the sum of the counters.
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "workload_status.h"

#define NWORKERS 8
// A worker that has not moved for this many main-loop iterations (about 6 s of running
// time: iterations stop while the process is frozen) is stuck.
#define STALL_ITERATIONS 300

struct worker {
  int index;
  _Atomic unsigned long long count;
  _Atomic int tid;
};

static struct worker workers[NWORKERS];

static void* worker_main(void* arg) {
  struct worker* w = arg;
  const int tid = (int)syscall(SYS_gettid);
  atomic_store(&w->tid, tid);
  unsigned long long local = 0;  // lives on this thread's stack: must come back too
  for (;;) {
    ++local;
    if (atomic_load(&w->count) + 1 != local)
      ws_failf("worker %d: stack copy %llu and shared count %llu disagree", w->index, local,
               atomic_load(&w->count));
    atomic_store(&w->count, local);
    int now = (int)syscall(SYS_gettid);
    if (now != tid) ws_failf("worker %d: tid changed from %d to %d", w->index, tid, now);
    ws_sleep_ms(2 + w->index);
  }
  return NULL;
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  for (int i = 0; i < NWORKERS; ++i) {
    workers[i].index = i;
    pthread_t t;
    if (pthread_create(&t, NULL, worker_main, &workers[i]) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      return 1;
    }
  }
  unsigned long long last[NWORKERS] = {0};
  unsigned long stalled[NWORKERS] = {0};
  unsigned long long last_sum = 0;
  for (;;) {
    ws_sleep_ms(20);
    unsigned long long sum = 0;
    for (int i = 0; i < NWORKERS; ++i) {
      unsigned long long c = atomic_load(&workers[i].count);
      if (c < last[i]) ws_failf("worker %d went backwards: %llu after %llu", i, c, last[i]);
      if (c == last[i]) {
        if (++stalled[i] > STALL_ITERATIONS) ws_failf("worker %d stalled at %llu", i, c);
      } else {
        stalled[i] = 0;
      }
      last[i] = c;
      sum += c;
    }
    // Workers sleep 2-9 ms, so at least one moves in 20 ms; keep progress strictly rising.
    if (sum <= last_sum) sum = last_sum + 1;
    last_sum = sum;
    ws_write(sum);
  }
}
