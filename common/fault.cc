#include "common/fault.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "common/error.h"
#include "common/fd.h"

namespace stasis {

bool fault_active(std::string_view name) {
  const char* wanted = std::getenv("STASIS_FAULT");
  return wanted && name == wanted;
}

void fault_point(std::string_view name) {
  if (fault_active(name)) fail("injected fault at {} (STASIS_FAULT)", name);
}

void fault_pause(std::string_view name) {
  const char* marker = std::getenv("STASIS_FAULT_PAUSE");
  if (!fault_active(name) || !marker || !*marker) return;
  UniqueFd fd(::open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) fail_errno(errno, "fault point {}: create {}", name, marker);
  fd.reset();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (::access(marker, F_OK) == 0) {
    if (std::chrono::steady_clock::now() > deadline) fail("fault point {}: {} was not removed within 60 s", name, marker);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace stasis
