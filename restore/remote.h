// A thread of the process being rebuilt, stopped under ptrace, into which we inject system
// calls from our code page, with a scratch area in that page for arguments passed by pointer.
#pragma once

#include <sys/types.h>

#include <climits>
#include <cstdint>
#include <span>
#include <vector>
#include <optional>
#include <string_view>

#include "common/ptrace.h"
#include "restore/code_page.h"

namespace stasis::restore {

class Remote {
 public:
  // host_tid: the thread as seen from the restorer; code_page: mapped in its address space.
  Remote(ptrace::SeizedThread& thread, pid_t host_pid, uint64_t code_page);

  long call(long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0,
            uint64_t a6 = 0) {
    return syscall_->call(nr, a1, a2, a3, a4, a5, a6);
  }
  uint64_t call_checked(std::string_view name, long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0,
                        uint64_t a4 = 0, uint64_t a5 = 0, uint64_t a6 = 0) {
    return syscall_->call_checked(name, nr, a1, a2, a3, a4, a5, a6);
  }

  // One call of a batch: its name (for errors), number and arguments.
  struct BatchCall {
    std::string_view name;
    long nr;
    uint64_t args[6] = {};
  };
  // The result of a call a batch did not reach, after one that failed.
  static constexpr long kNotRun = LONG_MIN;
  // Makes the calls in order in as few round trips as the scratch area allows (31 calls
  // each), stopping at the first that fails; returns each one's raw result (>= 0 or -errno,
  // kNotRun past the failure). The scratch area is overwritten.
  std::vector<long> call_batch(std::span<const BatchCall> calls);
  // The same, throwing "pid P: remote NAME: <errno>" for the first that fails.
  std::vector<long> call_batch_checked(std::span<const BatchCall> calls);

  // Copies data into the scratch area (starting over at each call) and returns its address.
  uint64_t put_scratch(const void* data, size_t size);
  void reset_scratch() { scratch_used_ = 0; }
  // Appends to the scratch area after what the last put_scratch()/append_scratch() wrote.
  uint64_t append_scratch(const void* data, size_t size);

  ptrace::RemoteSyscall& syscall() { return *syscall_; }
  pid_t host_pid() const { return host_pid_; }
  uint64_t code_page() const { return code_page_; }
  ptrace::SeizedThread& thread() { return thread_; }

  // Ends injection: the thread's registers go back to what they were when this was made.
  void finish() { syscall_.reset(); }

 private:
  ptrace::SeizedThread& thread_;
  pid_t host_pid_;
  uint64_t code_page_;
  uint64_t scratch_used_ = 0;
  std::optional<ptrace::RemoteSyscall> syscall_;
};

}  // namespace stasis::restore
