#include "restore/remote.h"

#include <span>

#include "common/error.h"

namespace stasis::restore {

Remote::Remote(ptrace::SeizedThread& thread, pid_t host_pid, uint64_t code_page)
    : thread_(thread), host_pid_(host_pid), code_page_(code_page) {
  syscall_.emplace(thread, code_page + kSyscallEntry, /*patch=*/false);
}

uint64_t Remote::put_scratch(const void* data, size_t size) {
  scratch_used_ = 0;
  return append_scratch(data, size);
}

uint64_t Remote::append_scratch(const void* data, size_t size) {
  const uint64_t offset = (scratch_used_ + 15) & ~uint64_t{15};
  if (offset + size > kScratchSize) fail("pid {}: {} bytes do not fit the scratch area", host_pid_, size);
  const uint64_t addr = code_page_ + kScratchOffset + offset;
  ptrace::write_memory(host_pid_, addr, std::as_bytes(std::span(static_cast<const char*>(data), size)));
  scratch_used_ = offset + size;
  return addr;
}

}  // namespace stasis::restore
