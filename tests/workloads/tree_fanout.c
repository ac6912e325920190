// tree_fanout N MIB: a parent and N-1 children, each with MIB MiB of anonymous memory filled
// with data derived from its index (bench/tree_bench.cc). Every process checks 16 words of its
// memory each iteration; a child that finds a wrong word, or dies, makes the parent FAIL.
// Progress is the parent's iteration count.
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "workload_status.h"

static uint64_t word_at(uint64_t seed, uint64_t i) {
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ULL ^ seed;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ULL;
  return x ^ (x >> 29);
}

static uint64_t* fill(uint64_t seed, size_t words) {
  uint64_t* m = mmap(NULL, words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
  for (size_t i = 0; i < words; ++i) m[i] = word_at(seed, i);
  return m;
}

static int check(const uint64_t* m, uint64_t seed, size_t words, uint64_t* rng) {
  for (int k = 0; k < 16; ++k) {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    size_t i = (size_t)(*rng % words);
    if (m[i] != word_at(seed, i)) return 0;
  }
  return 1;
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 3, "STATUS_FILE PROCESSES MIB");
  const int n = atoi(argv[2]);
  const size_t words = (size_t)atoi(argv[3]) << 17;
  int failed[2];
  if (pipe(failed) < 0) return 1;
  for (int k = 1; k < n; ++k) {
    if (fork() == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      close(failed[0]);
      uint64_t* m = fill((uint64_t)k, words);
      uint64_t rng = 88172645463325252ULL + (uint64_t)k;
      for (;;) {
        if (!m || !check(m, (uint64_t)k, words, &rng)) {
          if (write(failed[1], &k, sizeof k) < 0) {
          }
          for (;;) pause();
        }
        ws_sleep_ms(50);
      }
    }
  }
  close(failed[1]);
  fcntl(failed[0], F_SETFL, O_NONBLOCK);
  uint64_t* m = fill(0, words);
  uint64_t rng = 88172645463325252ULL;
  for (unsigned long long i = 1;; ++i) {
    int k;
    if (read(failed[0], &k, sizeof k) == (ssize_t)sizeof k) ws_failf("child %d found its memory wrong", k);
    int status;
    pid_t dead = waitpid(-1, &status, WNOHANG);
    if (dead > 0) ws_failf("child %d ended (status %#x)", (int)dead, status);
    if (!m || !check(m, 0, words, &rng)) ws_failf("the parent's memory is wrong");
    ws_write(i);
    ws_sleep_ms(10);
  }
}
