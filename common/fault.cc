#include "common/fault.h"

#include <cstdlib>

#include "common/error.h"

namespace stasis {

void fault_point(std::string_view name) {
  const char* wanted = std::getenv("STASIS_FAULT");
  if (wanted && name == wanted) fail("injected fault at {} (STASIS_FAULT)", name);
}

}  // namespace stasis
