// XXH3-64 with the widest vector unit this CPU has. The xxhash library is built for plain
// x86-64 (SSE2, about 10 GB/s here); the same hash with AVX2 or AVX-512 runs three to four
// times as fast, and it decides how fast a restore checks page data and a dump seals it.
// The value is XXH3_64bits's, whichever unit computes it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stasis {

uint64_t xxh3_64(const void* data, size_t size);

namespace detail {
// One per instruction set, each in a file compiled for it (common/CMakeLists.txt).
uint64_t xxh3_64_avx2(const void* data, size_t size);
uint64_t xxh3_64_avx512(const void* data, size_t size);
}  // namespace detail

}  // namespace stasis
