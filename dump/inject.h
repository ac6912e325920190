// Asking a stopped task what only it can tell (its signal handlers, brk, securebits, ...):
// single system calls run inside one of its threads, with their results written to a scratch
// area that we map in the task for the duration and unmap after (before the memory layout is
// read).
//
// Built so that the death of the dumper (kill -9) at any moment leaves the task as it was;
// docs/dump.md, "If the dumper dies", has the whole argument:
//  - every call runs at the `syscall` instruction of a small stub written into the zero
//    padding at the end of the task's vDSO (executable, never run or parsed by anyone): no
//    byte of the task's own code is changed;
//  - after that instruction, the stub puts the thread back into the context it was stopped in
//    (signal mask with rt_sigprocmask, then every general register, the flags, rsp and rip
//    with iretq), read from a block written on the thread's own stack, below its red zone,
//    before its registers are changed. A tracee whose tracer dies is detached by the kernel
//    and runs on with the registers we gave it: the call, the stub, then its own code, as if
//    nothing had happened;
//  - a call runs from a ptrace-stop to its syscall-entry and syscall-exit stops
//    (PTRACE_SYSCALL) and back to an interrupt stop where the registers are put back: there
//    is no int3, so no SIGTRAP is ever left pending for a thread that loses its tracer;
//  - all signals are blocked only while the registers point at the stub, which unblocks them.
// What a killed dumper can leave: the scratch mapping, and the stub's bytes in the vDSO's
// padding. Without room in a vDSO, calls fall back to ptrace::RemoteSyscall at the thread's
// own rip, which has none of these properties (a warning says so).
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/ptrace.h"

namespace stasis::dump {

class Injector {
 public:
  // Room for results, at scratch().
  static constexpr size_t kScratchSize = 4096;
  // After the results page, one slot per thread, for its recovery block when there is no room
  // below its stack pointer (the block at the top, room below for a signal handler).
  static constexpr size_t kSlotSize = 64 * 1024;

  // Writes the stub and maps the scratch area through thread (normally the leader);
  // `threads` is how many threads of the process calls will run in.
  Injector(pid_t pid, ptrace::SeizedThread& thread, size_t threads);
  ~Injector();  // unmaps if unmap() was not called (errors only logged), clears the stub
  Injector(const Injector&) = delete;
  Injector& operator=(const Injector&) = delete;

  // Unmaps the scratch area; throws on failure.
  void unmap();
  uint64_t scratch() const { return scratch_; }

  // Raw result (>= 0 or -errno) of syscall nr run in thread.
  long call(ptrace::SeizedThread& thread, long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0,
            uint64_t a4 = 0, uint64_t a5 = 0, uint64_t a6 = 0);
  // Throws "tid T: injected NAME: <errno>" on a negative result.
  long call_checked(ptrace::SeizedThread& thread, std::string_view name, long nr, uint64_t a1 = 0, uint64_t a2 = 0,
                    uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0, uint64_t a6 = 0);

  // For a call that returns a new file descriptor the job must not keep: runs nr at the
  // stub's second entry, which closes the result (mov rdi, rax; close) before the stub's
  // usual tail; take(fd) runs at the call's exit stop, the thread stopped (pidfd_getfd works
  // there). Once the registers are set, a tracer that dies leaves the call, the close and the
  // restore to the thread itself. Without the stub, two plain calls. Returns nr's result.
  long call_then_close(ptrace::SeizedThread& thread, long nr, uint64_t a1, const std::function<void(long)>& take);

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
  using Args = std::array<uint64_t, 6>;
  // Runs one call at the stub and brings the thread back to an interrupt stop with its
  // registers and signal mask as they were.
  long run(ptrace::SeizedThread& thread, long nr, const Args& args,
           const std::function<void(long)>* then_close = nullptr);
  // Writes the thread's recovery block; returns its address (the stub's rsp).
  uint64_t write_recovery_block(pid_t tid, const user_regs_struct& saved, uint64_t saved_mask);
  // Writes into the task through /proc/PID/mem, which may write into the r-x vDSO.
  void write_forced(uint64_t address, std::span<const std::byte> data);
  void remove_stub();

  pid_t pid_;
  ptrace::SeizedThread& thread_;
  UniqueFd mem_;
  uint64_t stub_ = 0;  // 0: no room in a vDSO, RemoteSyscall at the thread's rip
  std::vector<std::byte> stub_original_;
  uint64_t scratch_ = 0;
  size_t size_ = 0;
  size_t slots_ = 0;
  std::map<pid_t, size_t> slot_of_;
};

// The registers a thread stopped with `saved` resumes with when simply let go: a thread stopped
// inside an interrupted system call goes back over its `syscall` instruction with rax = the
// call (restart_syscall for -ERESTART_RESTARTBLOCK), as the kernel's restart logic does.
user_regs_struct resume_registers(const user_regs_struct& saved);

}  // namespace stasis::dump
