// Asking a stopped task what only it can tell (its signal handlers, brk, securebits, ...):
// single system calls injected with RemoteSyscall at the thread's own rip, results written to
// a scratch page that we map in the task for the duration and unmap after. All signals are
// blocked in the thread around each call, so nothing pending is delivered into our code, and
// its mask is put back after. The scratch page is unmapped before the memory layout is read.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "common/ptrace.h"

namespace stasis::dump {

class Injector {
 public:
  static constexpr size_t kScratchSize = 4096;

  // Maps the scratch page through thread (normally the leader).
  Injector(pid_t pid, ptrace::SeizedThread& thread);
  ~Injector();  // unmaps if unmap() was not called (errors only logged)
  Injector(const Injector&) = delete;
  Injector& operator=(const Injector&) = delete;

  // Unmaps the scratch page; throws on failure.
  void unmap();
  uint64_t scratch() const { return scratch_; }

  // Raw result (>= 0 or -errno) of syscall nr run in thread.
  long call(ptrace::SeizedThread& thread, long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0,
            uint64_t a4 = 0, uint64_t a5 = 0, uint64_t a6 = 0);
  // Throws "tid T: injected NAME: <errno>" on a negative result.
  long call_checked(ptrace::SeizedThread& thread, std::string_view name, long nr, uint64_t a1 = 0, uint64_t a2 = 0,
                    uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0, uint64_t a6 = 0);

  // Copies size bytes from the scratch page (after a call filled it).
  void read_scratch(void* out, size_t size) const;
  template <typename T>
  T read_scratch() const {
    T v;
    read_scratch(&v, sizeof v);
    return v;
  }
  // Zeroes the first size bytes of the scratch page.
  void clear_scratch(size_t size);

 private:
  pid_t pid_;
  ptrace::SeizedThread& thread_;
  uint64_t scratch_ = 0;
};

}  // namespace stasis::dump
