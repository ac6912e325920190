#include "dump/inject.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <utility>
#include <vector>

#include "common/error.h"
#include "common/log.h"

namespace stasis::dump {

namespace {

// Blocks every signal in a thread for its lifetime and puts the mask back after.
class SignalsBlocked {
 public:
  explicit SignalsBlocked(ptrace::SeizedThread& t) : thread_(t), saved_(t.get_sigmask()) { t.set_sigmask(~0ULL); }
  ~SignalsBlocked() {
    try {
      thread_.set_sigmask(saved_);
    } catch (const std::exception& e) {
      log::error("tid {}: could not restore the signal mask: {}", thread_.tid(), e.what());
    }
  }
  SignalsBlocked(const SignalsBlocked&) = delete;
  SignalsBlocked& operator=(const SignalsBlocked&) = delete;

 private:
  ptrace::SeizedThread& thread_;
  uint64_t saved_;
};

}  // namespace

Injector::Injector(pid_t pid, ptrace::SeizedThread& thread) : pid_(pid), thread_(thread) {
  long addr = call_checked(thread, "mmap (scratch page)", SYS_mmap, 0, kScratchSize, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0);
  scratch_ = static_cast<uint64_t>(addr);
}

Injector::~Injector() {
  if (!scratch_) return;
  try {
    unmap();
  } catch (const std::exception& e) {
    log::error("pid {}: could not unmap the scratch page at {:#x}: {}", pid_, scratch_, e.what());
  }
}

void Injector::unmap() {
  if (!scratch_) return;
  uint64_t addr = std::exchange(scratch_, 0);
  call_checked(thread_, "munmap (scratch page)", SYS_munmap, addr, kScratchSize);
}

long Injector::call(ptrace::SeizedThread& thread, long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                    uint64_t a5, uint64_t a6) {
  SignalsBlocked blocked(thread);
  user_regs_struct regs = thread.get_regs();
  ptrace::RemoteSyscall remote(thread, regs.rip, /*patch=*/true);
  return remote.call(nr, a1, a2, a3, a4, a5, a6);
}

long Injector::call_checked(ptrace::SeizedThread& thread, std::string_view name, long nr, uint64_t a1, uint64_t a2,
                            uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6) {
  long rc = call(thread, nr, a1, a2, a3, a4, a5, a6);
  if (rc < 0 && rc > -4096) fail_errno(static_cast<int>(-rc), "tid {}: injected {}", thread.tid(), name);
  return rc;
}

void Injector::read_scratch(void* out, size_t size) const {
  if (size > kScratchSize) fail("read_scratch: {} bytes is more than the scratch page", size);
  ptrace::read_memory(pid_, scratch_, std::span(static_cast<std::byte*>(out), size));
}

void Injector::clear_scratch(size_t size) {
  std::vector<std::byte> zeros(size);
  ptrace::write_memory(pid_, scratch_, zeros);
}

}  // namespace stasis::dump
