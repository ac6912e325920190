// xxh3_64 (common/fast_hash.h) gives XXH3_64bits's value with every instruction set this CPU
// has, for every length class of XXH3 (0, 1-3, 4-8, 9-16, 17-128, 129-240, long) and at
// unaligned addresses: page files written by one build are checked by another.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdint>
#include <vector>

#include "common/fast_hash.h"

namespace stasis {
namespace {

std::vector<unsigned char> bytes(size_t n) {
  std::vector<unsigned char> out(n);
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  for (auto& b : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<unsigned char>(x);
  }
  return out;
}

TEST(FastHash, SameValueAsTheLibraryForEveryLengthAndAlignment) {
  const auto data = bytes((4 << 20) + 64);
  using Fn = uint64_t (*)(const void*, size_t);
  std::vector<std::pair<const char*, Fn>> fns{{"dispatched", xxh3_64}};
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) fns.emplace_back("avx2", detail::xxh3_64_avx2);
  if (__builtin_cpu_supports("avx512f")) fns.emplace_back("avx512", detail::xxh3_64_avx512);
  for (size_t size : {0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1000, 1024, 4096, 65537, 1 << 20, 4 << 20}) {
    for (size_t offset : {0, 1, 7, 32}) {
      const uint64_t expected = XXH3_64bits(data.data() + offset, size);
      for (const auto& [name, fn] : fns)
        EXPECT_EQ(fn(data.data() + offset, size), expected) << name << ", " << size << " bytes at +" << offset;
    }
  }
}

}  // namespace
}  // namespace stasis
