// dirtier: argv[2] MiB of anonymous memory, of which it rewrites argv[3] whole pages (chosen at
// random) every 10 ms iteration: the job of the incremental-dump tests, which keeps dirtying
// memory at a known rate. Every word of page p is a function of p and the number of times p
// was rewritten (gen[p], in its own mapping); every half second it checks every page against
// gen, and the sum of gen against the count of page writes, so that a page restored from an
// older image than the rest (stale data, or a stale gen entry) fails the check. Progress is
// the iteration count. With argv[4] = N, it forks N children once its memory is filled, each
// going on with its own copy and its own random pages (a tree whose every process dirties and
// checks its memory); a child's failure, or a child gone, makes the parent FAIL.
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "workload_status.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static inline uint64_t rng(void) {  // xorshift64*
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}

static inline uint64_t word_of(uint64_t page, uint64_t gen, uint64_t w) {
  uint64_t x = (page << 20 ^ gen << 9 ^ w) * 0xD6E8FEB86659FD93ULL;
  return x ^ (x >> 32);
}

static void write_page(uint64_t* p, uint64_t page, uint64_t gen) {
  for (uint64_t w = 0; w < 512; ++w) p[w] = word_of(page, gen, w);
}

// Children's failures, in memory shared with the parent.
static char* child_failure;

int main(int argc, char** argv) {
  ws_init(argc, argv, 3, "STATUS_FILE MIB PAGES_PER_ITERATION [CHILDREN]");
  const int children = argc > 4 ? atoi(argv[4]) : 0;
  const unsigned long long mib = strtoull(argv[2], NULL, 10);
  const unsigned long long per_iter = strtoull(argv[3], NULL, 10);
  if (mib == 0 || mib > (1ULL << 20)) {
    fprintf(stderr, "dirtier: bad MIB '%s'\n", argv[2]);
    return 2;
  }
  const size_t pages = (size_t)mib * 256;
  uint64_t* buf = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint64_t* gen = mmap(NULL, pages * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED || gen == MAP_FAILED) {
    fprintf(stderr, "dirtier: mmap: %s\n", strerror(errno));
    return 1;
  }
  for (size_t p = 0; p < pages; ++p) write_page(buf + p * 512, p, 0);
  static volatile uint64_t writes = 0;  // page rewrites so far: the sum of gen
  int child = 0;  // 0: the parent, else the child's number
  pid_t pids[64];
  if (children > 0) {
    child_failure = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (child_failure == MAP_FAILED) ws_failf("mmap shared: %s", strerror(errno));
  }
  for (int c = 1; c <= children && c <= 64 && !ws_failed(); ++c) {
    pid_t pid = fork();
    if (pid < 0) ws_failf("fork: %s", strerror(errno));
    if (pid == 0) {
      child = c;
      rng_state ^= (uint64_t)c * 0x632BE59BD9B4E019ULL;
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      break;
    }
    pids[c - 1] = pid;
  }  double last_check = ws_monotonic();
  for (unsigned long long iter = 1;; ++iter) {
    for (unsigned long long k = 0; k < per_iter; ++k) {
      size_t p = (size_t)(rng() % pages);
      write_page(buf + p * 512, p, ++gen[p]);
      writes = writes + 1;
    }
    const double now = ws_monotonic();
    if (now - last_check > 0.5) {
      last_check = now;
      uint64_t sum = 0;
      for (size_t p = 0; p < pages && !ws_failed(); ++p) {
        sum += gen[p];
        const uint64_t* q = buf + p * 512;
        for (uint64_t w = 0; w < 512; ++w)
          if (q[w] != word_of(p, gen[p], w)) {
            ws_failf("page %zu word %llu is %016llx, expected %016llx (generation %llu, iteration %llu)", p,
                     (unsigned long long)w, (unsigned long long)q[w], (unsigned long long)word_of(p, gen[p], w),
                     (unsigned long long)gen[p], iter);
            break;
          }
      }
      if (!ws_failed() && sum != writes)
        ws_failf("the page generations add up to %llu, but %llu pages were written", (unsigned long long)sum,
                 (unsigned long long)writes);
    }
    if (child) {
      if (ws_failed() && child_failure[0] == 0) snprintf(child_failure, 4096, "child %d: %s", child, ws_fail);
      ws_sleep_ms(10);
      continue;
    }
    if (children > 0 && !ws_failed()) {
      if (child_failure[0]) ws_failf("%s", child_failure);
      for (int c = 0; c < children && c < 64; ++c) {
        int status;
        if (pids[c] > 0 && waitpid(pids[c], &status, WNOHANG) == pids[c]) {
          ws_failf("child %d (pid %d) is gone (status %#x)", c + 1, pids[c], status);
          pids[c] = 0;
        }
      }
    }
    ws_write(iter);
    ws_sleep_ms(10);
  }
}
