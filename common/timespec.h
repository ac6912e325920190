// Nanosecond counts to and from struct timespec, for the timers that dump and restore carry.
#pragma once

#include <time.h>

#include <cstdint>

namespace stasis {

inline uint64_t to_nanoseconds(const timespec& ts) {
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline timespec to_timespec(uint64_t ns) {
  return timespec{static_cast<time_t>(ns / 1000000000ull), static_cast<long>(ns % 1000000000ull)};
}

}  // namespace stasis
