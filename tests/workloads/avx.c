// avx (x86_64): loads ymm0-ymm15 and r12-r15 with a known pattern, then spins in an asm loop
// that compares every register with the pattern (vptest against the pattern and its
// complement) millions of times. Nearly all time is spent inside the loop, so a checkpoint
// lands there and the restore must bring back the full AVX state and the general registers.
// The pattern changes with each round. Without AVX it only counts (and says so on stderr).
#include <stdint.h>

#include "workload_status.h"

#if defined(__x86_64__)

// 16 ymm patterns of 32 bytes, their complements, and 4 general-register patterns.
static uint64_t pat[16 * 4] __attribute__((aligned(32)));
static uint64_t notpat[16 * 4] __attribute__((aligned(32)));
static uint64_t gpat[4];

#define LOAD(i) "vmovdqa " #i "*32(%[p]), %%ymm" #i "\n\t"
#define CHECK(i)                               \
  "mov $" #i ", %[bad]\n\t"                    \
  "vptest " #i "*32(%[p]), %%ymm" #i "\n\t"    \
  "jnc 2f\n\t"                                 \
  "vptest " #i "*32(%[n]), %%ymm" #i "\n\t"    \
  "jnz 2f\n\t"

// Returns -1 when all registers held their pattern for all iterations, else the index of the
// first register found wrong (0-15 ymm, 16-19 r12-r15) with *left = iterations left then.
static long spin(uint64_t iterations, uint64_t* left) {
  long bad;
  uint64_t count = iterations;
  __asm__ volatile(
      LOAD(0) LOAD(1) LOAD(2) LOAD(3) LOAD(4) LOAD(5) LOAD(6) LOAD(7)
      LOAD(8) LOAD(9) LOAD(10) LOAD(11) LOAD(12) LOAD(13) LOAD(14) LOAD(15)
      "mov 0(%[g]), %%r12\n\t"
      "mov 8(%[g]), %%r13\n\t"
      "mov 16(%[g]), %%r14\n\t"
      "mov 24(%[g]), %%r15\n\t"
      "1:\n\t"
      CHECK(0) CHECK(1) CHECK(2) CHECK(3) CHECK(4) CHECK(5) CHECK(6) CHECK(7)
      CHECK(8) CHECK(9) CHECK(10) CHECK(11) CHECK(12) CHECK(13) CHECK(14) CHECK(15)
      "mov $16, %[bad]\n\t"
      "cmp 0(%[g]), %%r12\n\t"
      "jne 2f\n\t"
      "mov $17, %[bad]\n\t"
      "cmp 8(%[g]), %%r13\n\t"
      "jne 2f\n\t"
      "mov $18, %[bad]\n\t"
      "cmp 16(%[g]), %%r14\n\t"
      "jne 2f\n\t"
      "mov $19, %[bad]\n\t"
      "cmp 24(%[g]), %%r15\n\t"
      "jne 2f\n\t"
      "dec %[count]\n\t"
      "jnz 1b\n\t"
      "mov $-1, %[bad]\n\t"
      "2:\n\t"
      "vzeroupper\n\t"
      : [count] "+r"(count), [bad] "=&r"(bad)
      : [p] "r"(pat), [n] "r"(notpat), [g] "r"(gpat)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
        "xmm12", "xmm13", "xmm14", "xmm15", "r12", "r13", "r14", "r15", "cc", "memory");
  *left = count;
  return bad;
}

static void set_patterns(uint64_t round) {
  uint64_t x = 0x9E3779B97F4A7C15ULL * (round + 1);
  for (int i = 0; i < 16 * 4; ++i) {
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    pat[i] = x;
    notpat[i] = ~x;
  }
  for (int i = 0; i < 4; ++i) gpat[i] = pat[i * 5] ^ 0x0123456789ABCDEFULL;
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx")) {
    fprintf(stderr, "avx: this CPU has no AVX: only counting\n");
    for (unsigned long long n = 1;; ++n) {
      ws_write(n);
      ws_sleep_ms(20);
    }
  }
  // Calibrate rounds of about 30 ms.
  uint64_t left;
  set_patterns(0);
  double t0 = ws_monotonic();
  spin(200000, &left);
  double dt = ws_monotonic() - t0;
  uint64_t per_round = dt > 0 ? (uint64_t)(200000 * 0.030 / dt) : 2000000;
  if (per_round < 1000) per_round = 1000;
  for (unsigned long long round = 1;; ++round) {
    set_patterns(round);
    long bad = spin(per_round, &left);
    if (bad >= 0)
      ws_failf("%s%ld lost its pattern in round %llu with %llu of %llu iterations left", bad < 16 ? "ymm" : "r",
               bad < 16 ? bad : bad - 4, round, (unsigned long long)left, (unsigned long long)per_round);
    ws_write(round);
  }
}

#else
int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  fprintf(stderr, "avx: not x86_64: only counting\n");
  for (unsigned long long n = 1;; ++n) {
    ws_write(n);
    ws_sleep_ms(20);
  }
}
#endif
