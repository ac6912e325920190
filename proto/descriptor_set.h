// The FileDescriptorSet of every stasis .proto, embedded at build time. The generated classes
// are lite (no descriptors registered at start-up); whatever needs reflection, such as the
// JSON of `stasis show` and `stasis ps --json`, builds a pool from this (proto/reflection.h).
#pragma once

#include <string_view>

namespace stasis::pb {

std::string_view descriptor_set();

}  // namespace stasis::pb
