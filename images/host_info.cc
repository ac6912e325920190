#include "images/host_info.h"

#include <cpuid.h>

namespace stasis::images {

namespace {

bool os_has_xsave() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  return (ecx & bit_OSXSAVE) != 0;  // xgetbv faults unless the OS set CR4.OSXSAVE
}

}  // namespace

uint64_t xsave_features() {
  if (!os_has_xsave()) return 0;
  uint32_t lo = 0, hi = 0;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

uint32_t xsave_size() {
  if (!os_has_xsave()) return 0;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(0xD, 0, &eax, &ebx, &ecx, &edx)) return 0;
  return ebx;
}

}  // namespace stasis::images
