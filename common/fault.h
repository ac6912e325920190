// Fault injection for tests: a named point throws when STASIS_FAULT names it, so tests can
// prove that a failure at that step leaves nothing behind (the way real failures would).
#pragma once

#include <string_view>

namespace stasis {

// Throws Error("injected fault at NAME") when the environment variable STASIS_FAULT == name.
void fault_point(std::string_view name);
// True when STASIS_FAULT == name: for points that make a step take its fallback path (as if
// the kernel lacked a feature) instead of failing.
bool fault_active(std::string_view name);
// When STASIS_FAULT == name and STASIS_FAULT_PAUSE names a file: creates that file, then waits
// until it is removed (at most 60 s), so that a test can act at exactly this point (change a
// file the step is about to read) and then let it go on.
void fault_pause(std::string_view name);

}  // namespace stasis
