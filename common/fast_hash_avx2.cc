// XXH3-64 compiled for AVX2 (see common/fast_hash.h). Nothing else belongs in this file:
// all of it may use AVX2 instructions, so it is called only where the CPU has them.
#define XXH_INLINE_ALL  // every xxhash function static in this file, built for AVX2
#include <xxhash.h>

#include "common/fast_hash.h"

namespace stasis::detail {

uint64_t xxh3_64_avx2(const void* data, size_t size) { return XXH3_64bits(data, size); }

}  // namespace stasis::detail
