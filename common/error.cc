#include "common/error.h"

#include <cstring>

namespace stasis {

std::string errno_name(int err) {
  // strerrorname_np is glibc 2.32+; Debian 12 has 2.36.
  const char* name = strerrorname_np(err);
  return name ? name : fmt::format("E{}", err);
}

std::string describe_errno(int err) {
  return fmt::format("{} (errno {}, {})", std::strerror(err), err, errno_name(err));
}

}  // namespace stasis
