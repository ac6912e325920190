// Facts about the dumping host that a restore must check: XSAVE features and area size.
#pragma once

#include <cstdint>

namespace stasis::images {

// XCR0 (xgetbv 0): the state components the OS enabled, hence which ones a saved XSAVE
// area may hold. 0 when the CPU or OS lacks XSAVE.
uint64_t xsave_features();
// Bytes of an XSAVE area for the features in XCR0 (cpuid leaf 0xD, sub-leaf 0, EBX).
uint32_t xsave_size();

}  // namespace stasis::images
