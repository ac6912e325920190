#include "common/fast_hash.h"

#include <xxhash.h>

namespace stasis {
namespace {

using HashFn = uint64_t (*)(const void*, size_t);

uint64_t xxh3_64_sse2(const void* data, size_t size) { return XXH3_64bits(data, size); }

HashFn pick() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return detail::xxh3_64_avx512;
  if (__builtin_cpu_supports("avx2")) return detail::xxh3_64_avx2;
  return xxh3_64_sse2;
}

}  // namespace

uint64_t xxh3_64(const void* data, size_t size) {
  static const HashFn fn = pick();
  return fn(data, size);
}

}  // namespace stasis
