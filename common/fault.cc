#include "common/fault.h"

#include <cstdlib>

#include "common/error.h"

namespace stasis {

bool fault_active(std::string_view name) {
  const char* wanted = std::getenv("STASIS_FAULT");
  return wanted && name == wanted;
}

void fault_point(std::string_view name) {
  if (fault_active(name)) fail("injected fault at {} (STASIS_FAULT)", name);
}

}  // namespace stasis
