// bigmem: argv[2] MiB of anonymous memory filled with pseudo-random data from a seeded
// xorshift PRNG. It keeps a checksum of the whole buffer, changes a few words in a few random
// pages every iteration (updating the expected checksum), and re-hashes everything every few
// seconds. Progress is the iteration count. Handles sizes beyond 4 GiB.
#include <stdint.h>
#include <sys/mman.h>

#include "workload_status.h"

static uint64_t rng_state;
static inline uint64_t rng(void) {  // xorshift64*
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}

// Position-dependent and additive over words, so that one word can be updated in O(1).
static inline uint64_t mix(uint64_t index, uint64_t word) {
  uint64_t x = (word ^ (index * 0xD6E8FEB86659FD93ULL)) * 0x9E3779B97F4A7C15ULL;
  return x ^ (x >> 29);
}

static uint64_t hash_all(const uint64_t* w, size_t n) {
  uint64_t a = 0, b = 0, c = 0, d = 0;  // four lanes keep the multiplier busy
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a += mix(i, w[i]);
    b += mix(i + 1, w[i + 1]);
    c += mix(i + 2, w[i + 2]);
    d += mix(i + 3, w[i + 3]);
  }
  for (; i < n; ++i) a += mix(i, w[i]);
  return a + b + c + d;
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 2, "STATUS_FILE MIB");
  char* end = NULL;
  unsigned long long mib = strtoull(argv[2], &end, 10);
  if (!end || *end || mib == 0 || mib > (1ULL << 20)) {
    fprintf(stderr, "bigmem: MIB must be a positive number of MiB, got '%s'\n", argv[2]);
    return 2;
  }
  const size_t bytes = (size_t)mib << 20;
  const size_t words = bytes / 8;
  const size_t page_words = 4096 / 8;
  uint64_t* buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (buf == MAP_FAILED) {
    fprintf(stderr, "bigmem: mmap %llu MiB: %s\n", mib, strerror(errno));
    return 1;
  }
  rng_state = 0x243F6A8885A308D3ULL ^ mib;
  for (size_t i = 0; i < words; ++i) buf[i] = rng();
  uint64_t expected = hash_all(buf, words);

  const unsigned long long rehash_every = 100;  // iterations: 2-3 s at 20 ms each
  for (unsigned long long iter = 1;; ++iter) {
    for (int k = 0; k < 4; ++k) {
      size_t page = (size_t)(rng() % (words / page_words));
      for (int j = 0; j < 4; ++j) {
        size_t i = page * page_words + (size_t)(rng() % page_words);
        uint64_t v = rng();
        expected += mix(i, v) - mix(i, buf[i]);
        buf[i] = v;
      }
    }
    if (iter % rehash_every == 0) {
      uint64_t got = hash_all(buf, words);
      if (got != expected)
        ws_failf("hash of %llu MiB is %016llx, expected %016llx (iteration %llu)", mib, (unsigned long long)got,
                 (unsigned long long)expected, iter);
    }
    ws_write(iter);
    ws_sleep_ms(20);
  }
}
