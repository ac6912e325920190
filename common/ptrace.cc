// ptrace control and system call injection. See common/ptrace.h and docs/kernel.md.
#include "common/ptrace.h"

#include <cpuid.h>
#include <elf.h>
#include <sched.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "common/compat.h"
#include "common/error.h"
#include "common/log.h"

namespace stasis::ptrace {

namespace {

using Clock = std::chrono::steady_clock;

// PTRACE_SYSCALL_INFO_ENTRY and _EXIT of <linux/ptrace.h>; the `syscall` instruction's length.
constexpr int kSyscallInfoEntry = 1;
constexpr int kSyscallInfoExit = 2;
constexpr uint64_t kSyscallLength = 2;
// -ERESTARTSYS to -ERESTART_RESTARTBLOCK: a call the kernel restarts on the way out.
constexpr long kErestartFirst = compat::kErestartSys;
constexpr long kErestartLast = compat::kErestartRestartBlock;

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("was killed by {}", signal_name(WTERMSIG(status)));
  if (WIFSTOPPED(status)) {
    int event = status >> 16;
    if (event != 0) return fmt::format("stopped with ptrace event {} ({})", event, signal_name(WSTOPSIG(status)));
    return fmt::format("stopped by {}", signal_name(WSTOPSIG(status)));
  }
  return fmt::format("changed state (status {:#x})", status);
}

// waitpid(tid, __WALL) bounded in time. The tracer cannot block in waitpid with a timeout, so
// it polls with WNOHANG, yielding first (an injected call usually completes within
// microseconds) and then sleeping with a growing interval (up to 1 ms) to spare the CPU.
// Returns false on timeout.
bool wait_bounded(pid_t tid, int* status, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::chrono::microseconds nap{0};
  for (int spins = 0;; ++spins) {
    pid_t rc = ::waitpid(tid, status, __WALL | WNOHANG);
    if (rc == tid) return true;
    if (rc < 0) {
      if (errno == EINTR) continue;
      fail_errno(errno, "waitpid tid {}", tid);
    }
    if (Clock::now() >= deadline) return false;
    if (spins < 50) {
      sched_yield();
    } else {
      nap = std::min(std::chrono::microseconds(1000), nap + std::chrono::microseconds(20));
      std::this_thread::sleep_for(nap);
    }
  }
}

bool is_fault_signal(int sig) {
  return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGSYS;
}

// XSAVE area size for the features this CPU supports (CPUID leaf 0xD, sub-leaf 0, ecx), plus
// slack; the kernel trims iov_len to what it actually wrote.
size_t xstate_buffer_size() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  size_t size = 4096;
  if (__get_cpuid_count(0xD, 0, &eax, &ebx, &ecx, &edx) && ecx != 0) size = std::max<size_t>(size, ecx);
  return std::min(size + 4096, compat::kMaxXstateSize);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// SeizedThread

SeizedThread SeizedThread::seize(pid_t tid, unsigned long options) {
  // RemoteSyscall tells its syscall stops (SIGTRAP|0x80) from signals by this option.
  options |= PTRACE_O_TRACESYSGOOD;
  if (::ptrace(PTRACE_SEIZE, tid, nullptr, options) < 0)
    fail_errno(errno, "ptrace seize tid {} (options {:#x})", tid, options);
  return SeizedThread(tid);
}

SeizedThread SeizedThread::adopt(pid_t tid) { return SeizedThread(tid); }

SeizedThread::SeizedThread(SeizedThread&& other) noexcept
    : tid_(std::exchange(other.tid_, -1)),
      stopped_(std::exchange(other.stopped_, false)),
      group_stop_signal_(std::exchange(other.group_stop_signal_, 0)) {}

SeizedThread& SeizedThread::operator=(SeizedThread&& other) noexcept {
  if (this != &other) {
    if (tid_ >= 0) {
      try {
        detach();
      } catch (const std::exception& e) {
        log::debug("detach tid {}: {}", tid_, e.what());
      }
    }
    tid_ = std::exchange(other.tid_, -1);
    stopped_ = std::exchange(other.stopped_, false);
    group_stop_signal_ = std::exchange(other.group_stop_signal_, 0);
  }
  return *this;
}

SeizedThread::~SeizedThread() {
  if (tid_ < 0) return;
  try {
    detach();
  } catch (const std::exception& e) {
    log::debug("detach tid {} on destruction: {}", tid_, e.what());
  }
}

int SeizedThread::wait_stop(std::chrono::milliseconds timeout) {
  int status = 0;
  if (!wait_bounded(tid_, &status, timeout))
    fail("tid {}: no ptrace stop within {} ms", tid_, timeout.count());
  if (!WIFSTOPPED(status)) {
    pid_t tid = std::exchange(tid_, -1);  // gone: nothing left to detach
    stopped_ = false;
    fail("tid {} {} while traced", tid, describe_status(status));
  }
  stopped_ = true;
  return status;
}

void SeizedThread::note_interrupt_stop(int status) {
  if (WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_STOP)
    group_stop_signal_ = WSTOPSIG(status) == SIGTRAP ? 0 : WSTOPSIG(status);
}

void SeizedThread::interrupt_and_wait(std::chrono::milliseconds timeout) {
  if (stopped_) return;  // PTRACE_INTERRUPT on a stopped tracee would only trap after it resumes
  if (::ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) < 0) fail_errno(errno, "ptrace interrupt tid {}", tid_);
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    int status = 0;
    try {
      status = wait_stop(std::max(left, std::chrono::milliseconds(0)));
    } catch (const Error& e) {
      throw Error(fmt::format("interrupt: {}", e.what()));
    }
    int event = status >> 16;
    int sig = WSTOPSIG(status);
    if (event == PTRACE_EVENT_STOP) {  // the interrupt or a group-stop: done
      note_interrupt_stop(status);
      return;
    }
    // A syscall stop of a thread resumed with cont_to_syscall (an injected call): a ptrace-stop
    // as good as the interrupt's, which it takes the place of.
    if (event == 0 && sig == (SIGTRAP | 0x80)) return;
    if (event != 0) {
      // Another ptrace event (clone, exec, ...) reached first; the interrupt is still pending.
      log::debug("tid {}: ptrace event {} before the interrupt stop; resuming", tid_, event);
      cont(0);
      continue;
    }
    // A signal-delivery-stop: deliver the signal as the kernel would have, then wait for the
    // interrupt, which stays pending.
    log::debug("tid {}: {} arrived before the interrupt stop; delivering it", tid_, signal_name(sig));
    cont(sig);
  }
}

void SeizedThread::cont(int signal) {
  if (::ptrace(PTRACE_CONT, tid_, nullptr, reinterpret_cast<void*>(static_cast<long>(signal))) < 0)
    fail_errno(errno, "ptrace cont tid {}", tid_);
  stopped_ = false;
}

void SeizedThread::cont_to_syscall(int signal) {
  if (::ptrace(PTRACE_SYSCALL, tid_, nullptr, reinterpret_cast<void*>(static_cast<long>(signal))) < 0)
    fail_errno(errno, "ptrace syscall tid {}", tid_);
  stopped_ = false;
}

void SeizedThread::request_interrupt() const {
  if (::ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) < 0) fail_errno(errno, "ptrace interrupt tid {}", tid_);
}

int SeizedThread::syscall_stop_kind() const {
  // struct ptrace_syscall_info starts with its op byte; <linux/ptrace.h> clashes with glibc's.
  unsigned char info[128] = {};
  if (::ptrace(PTRACE_GET_SYSCALL_INFO, tid_, reinterpret_cast<void*>(sizeof info), info) < 0)
    fail_errno(errno, "ptrace get syscall info tid {}", tid_);
  return info[0];
}

void SeizedThread::detach() {
  if (tid_ < 0) return;
  // PTRACE_DETACH needs a ptrace-stop; a running seized thread is interrupted first.
  if (!stopped_) interrupt_and_wait();
  if (::ptrace(PTRACE_DETACH, tid_, nullptr, nullptr) < 0) {
    int err = errno;
    pid_t tid = std::exchange(tid_, -1);
    stopped_ = false;
    fail_errno(err, "ptrace detach tid {}", tid);
  }
  tid_ = -1;
  stopped_ = false;
}

user_regs_struct SeizedThread::get_regs() const {
  user_regs_struct regs{};
  iovec iov{&regs, sizeof regs};
  if (::ptrace(PTRACE_GETREGSET, tid_, reinterpret_cast<void*>(NT_PRSTATUS), &iov) < 0)
    fail_errno(errno, "ptrace getregset NT_PRSTATUS tid {}", tid_);
  if (iov.iov_len != sizeof regs) fail("tid {}: NT_PRSTATUS has {} bytes, expected {}", tid_, iov.iov_len, sizeof regs);
  return regs;
}

void SeizedThread::set_regs(const user_regs_struct& regs) const {
  user_regs_struct copy = regs;
  iovec iov{&copy, sizeof copy};
  if (::ptrace(PTRACE_SETREGSET, tid_, reinterpret_cast<void*>(NT_PRSTATUS), &iov) < 0)
    fail_errno(errno, "ptrace setregset NT_PRSTATUS tid {}", tid_);
}

std::vector<std::byte> SeizedThread::get_xstate() const {
  std::vector<std::byte> buffer(xstate_buffer_size());
  iovec iov{buffer.data(), buffer.size()};
  if (::ptrace(PTRACE_GETREGSET, tid_, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) < 0)
    fail_errno(errno, "ptrace getregset NT_X86_XSTATE tid {} ({} byte buffer)", tid_, buffer.size());
  buffer.resize(iov.iov_len);
  return buffer;
}

void SeizedThread::set_xstate(std::span<const std::byte> xstate) const {
  std::vector<std::byte> copy(xstate.begin(), xstate.end());
  iovec iov{copy.data(), copy.size()};
  if (::ptrace(PTRACE_SETREGSET, tid_, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) < 0)
    fail_errno(errno, "ptrace setregset NT_X86_XSTATE tid {} ({} bytes)", tid_, copy.size());
}

uint64_t SeizedThread::get_sigmask() const {
  uint64_t mask = 0;
  if (::ptrace(PTRACE_GETSIGMASK, tid_, reinterpret_cast<void*>(sizeof mask), &mask) < 0)
    fail_errno(errno, "ptrace getsigmask tid {}", tid_);
  return mask;
}

void SeizedThread::set_sigmask(uint64_t mask) const {
  if (::ptrace(PTRACE_SETSIGMASK, tid_, reinterpret_cast<void*>(sizeof mask), &mask) < 0)
    fail_errno(errno, "ptrace setsigmask tid {} (mask {:#x})", tid_, mask);
}

RseqConfiguration SeizedThread::get_rseq() const {
  compat::RseqConfigurationAbi abi{};
  long rc = ::ptrace(static_cast<__ptrace_request>(PTRACE_GET_RSEQ_CONFIGURATION), tid_,
                     reinterpret_cast<void*>(sizeof abi), &abi);
  if (rc < 0) fail_errno(errno, "ptrace get rseq configuration tid {}", tid_);
  RseqConfiguration config;
  config.address = abi.rseq_abi_pointer;
  config.length = abi.rseq_abi_size;
  config.flags = abi.flags;
  config.signature = abi.signature;
  return config;
}

std::vector<siginfo_t> SeizedThread::peek_siginfo(bool shared) const {
  std::vector<siginfo_t> result;
  constexpr int kBatch = 32;
  siginfo_t batch[kBatch];
  for (;;) {
    struct __ptrace_peeksiginfo_args args{};
    args.off = result.size();
    args.flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0;
    args.nr = kBatch;
    long n = ::ptrace(PTRACE_PEEKSIGINFO, tid_, &args, batch);
    if (n < 0) fail_errno(errno, "ptrace peeksiginfo tid {} ({} queue, offset {})", tid_, shared ? "shared" : "thread", args.off);
    if (n == 0) break;
    result.insert(result.end(), batch, batch + n);
  }
  return result;
}

// ---------------------------------------------------------------------------------------
// RemoteSyscall

RemoteSyscall::RemoteSyscall(SeizedThread& thread, uint64_t code_address, bool patch)
    : thread_(thread), code_address_(code_address), patch_(patch) {
  if (!thread_.stopped()) fail("tid {}: remote syscall needs a stopped thread", thread_.tid());
  saved_regs_ = thread_.get_regs();
  saved_sigmask_ = thread_.get_sigmask();
  // Block every signal for the time of the injection: a handler must never run on our
  // borrowed registers. SIGKILL and SIGSTOP cannot be blocked; call() copes with them.
  // A thread stopped in rt_sigsuspend/ppoll/pselect6/epoll_pwait runs with a temporary
  // mask; PTRACE_GETSIGMASK then reports the real one (saved_sigmask), and setting it back
  // at the end leaves the real mask in place while the restarted call installs its
  // temporary one again, so the round trip is exact.
  thread_.set_sigmask(~uint64_t{0});
}

RemoteSyscall::~RemoteSyscall() {
  if (thread_.tid() < 0) return;  // the thread is gone
  try {
    const long saved_rax = static_cast<long>(saved_regs_.rax);
    if (at_syscall_exit_ && static_cast<long>(saved_regs_.orig_rax) >= 0 && saved_rax >= -kErestartLast &&
        saved_rax <= -kErestartFirst)
      leave_syscall_exit_stop();
    thread_.set_regs(saved_regs_);
    thread_.set_sigmask(saved_sigmask_);
    // Signals queue again once the thread resumes (their siginfo is not kept: tkill).
    for (int sig : deferred_signals_) {
      if (::syscall(SYS_tkill, thread_.tid(), sig) < 0)
        log::warn("tid {}: re-sending {} after injection failed: {}", thread_.tid(), signal_name(sig),
                  describe_errno(errno));
    }
  } catch (const std::exception& e) {
    log::error("tid {}: putting back registers after injection failed: {}", thread_.tid(), e.what());
  }
}

void RemoteSyscall::leave_syscall_exit_stop() {
  // Resumed from a syscall-exit stop, a thread goes back to user space without passing the
  // kernel's syscall-restart step, which the saved registers need (the thread was caught
  // inside an interrupted call, rax -ERESTART*). An interrupt stop is in the signal code,
  // before that step, as the thread's first stop was: move it there.
  thread_.request_interrupt();
  thread_.cont(0);
  for (;;) {
    const int status = thread_.wait_stop();
    if ((status >> 16) == PTRACE_EVENT_STOP) break;
    if ((status >> 16) == 0) deferred_signals_.push_back(WSTOPSIG(status));
    thread_.cont(0);
  }
  at_syscall_exit_ = false;
}

void RemoteSyscall::restore_code(uint64_t original_word) {
  if (::ptrace(PTRACE_POKEDATA, thread_.tid(), reinterpret_cast<void*>(code_address_),
               reinterpret_cast<void*>(original_word)) < 0)
    fail_errno(errno, "tid {}: putting back code at {:#x}", thread_.tid(), code_address_);
}

long RemoteSyscall::call(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6) {
  const pid_t tid = thread_.tid();
  events_.clear();
  at_syscall_exit_ = false;

  uint64_t original_word = 0;
  if (patch_) {
    errno = 0;
    long word = ::ptrace(PTRACE_PEEKDATA, tid, reinterpret_cast<void*>(code_address_), nullptr);
    if (word == -1 && errno != 0) fail_errno(errno, "tid {}: reading code at {:#x}", tid, code_address_);
    original_word = static_cast<uint64_t>(word);
    uint64_t patched = original_word;
    std::memcpy(&patched, kSyscallInsn.data(), kSyscallInsn.size());  // x86 is little-endian
    if (::ptrace(PTRACE_POKEDATA, tid, reinterpret_cast<void*>(code_address_), reinterpret_cast<void*>(patched)) < 0)
      fail_errno(errno, "tid {}: writing syscall instruction at {:#x}", tid, code_address_);
  }

  // Whatever happens below, the code bytes go back before we return or throw.
  struct CodeGuard {
    RemoteSyscall* self;
    uint64_t word;
    ~CodeGuard() {
      if (!self->patch_) return;
      try {
        self->restore_code(word);
      } catch (const std::exception& e) {
        log::error("{}", e.what());
      }
    }
  } guard{this, original_word};

  user_regs_struct regs = saved_regs_;
  regs.rip = code_address_;
  regs.rax = static_cast<uint64_t>(nr);
  // orig_rax = -1 tells the kernel this thread is not inside a system call. The thread may
  // have been stopped in the middle of one (rax = -ERESTARTSYS and friends, orig_rax = its
  // number); when it resumes from this stop, the kernel's signal code would then "restart"
  // that call by setting rax = orig_rax and moving rip back by 2, clobbering the registers we
  // just set. With orig_rax = -1 it leaves them alone. The saved registers (with the real
  // orig_rax) are put back afterwards, so the interrupted call is restarted when the thread
  // finally resumes.
  regs.orig_rax = static_cast<uint64_t>(-1);
  regs.rdi = a1;
  regs.rsi = a2;
  regs.rdx = a3;
  regs.r10 = a4;
  regs.r8 = a5;
  regs.r9 = a6;
  thread_.set_regs(regs);
  // The call ends at its syscall-exit stop, never at the int3 after it: a trap raised while
  // every signal is blocked makes the kernel reset the thread's SIGTRAP action to SIG_DFL
  // (force_sig), which would silently take the job's own SIGTRAP handler away.
  thread_.cont_to_syscall();

  const auto deadline = Clock::now() + timeout_;
  const std::string what = fmt::format("remote syscall {}", nr);
  for (;;) {
    const int status = wait_for_stop(deadline, what);
    int event = status >> 16;
    int sig = WSTOPSIG(status);
    if (event != 0) {
      unsigned long message = 0;
      ::ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &message);
      if (event != PTRACE_EVENT_STOP) events_.push_back({event, message});
      // A ptrace event (clone of an injected clone3, ...) or a group-stop/interrupt: go on.
      thread_.cont_to_syscall();
      continue;
    }
    if ((sig & 0x7f) == SIGTRAP) {
      // With PTRACE_O_TRACESYSGOOD a syscall stop is SIGTRAP|0x80; without, plain SIGTRAP.
      const int kind = thread_.syscall_stop_kind();
      if (kind == kSyscallInfoExit) {
        user_regs_struct after = thread_.get_regs();
        const long rax = static_cast<long>(after.rax);
        if (rax >= -kErestartLast && rax <= -kErestartFirst) {
          // Interrupted by a signal (SIGSTOP, ...): the kernel restarts the call on the way out.
          thread_.cont_to_syscall();
          continue;
        }
        if (after.rip != code_address_ + kSyscallLength)
          fail("tid {}: remote syscall {} stopped on the way out of a system call at {:#x}, not {:#x}", tid, nr,
               after.rip, code_address_ + kSyscallLength);
        at_syscall_exit_ = true;
        return static_cast<long>(after.rax);
      }
      if (kind != kSyscallInfoEntry) {
        // A SIGTRAP signal sent by someone: keep it for later.
        deferred_signals_.push_back(SIGTRAP);
      }
      thread_.cont_to_syscall();
      continue;
    }
    if (is_fault_signal(sig)) {
      siginfo_t info{};
      ::ptrace(PTRACE_GETSIGINFO, tid, nullptr, &info);
      // The thread stays in this signal-delivery-stop; the signal is suppressed when it is
      // next resumed with cont(0) or detached.
      fail("tid {}: remote syscall {} at {:#x} raised {} (si_code {}, address {})", tid, nr, code_address_,
           signal_name(sig), info.si_code, info.si_addr);
    }
    // An unblockable or otherwise unexpected signal: suppress it now (an interrupted
    // injected call is then restarted by the kernel) and send it again at the end.
    log::debug("tid {}: {} during remote syscall {}; deferring it", tid, signal_name(sig), nr);
    deferred_signals_.push_back(sig);
    thread_.cont_to_syscall();
  }
}

int RemoteSyscall::wait_for_stop(std::chrono::steady_clock::time_point deadline, const std::string& what) {
  const auto left = std::max(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()),
                             std::chrono::milliseconds(0));
  try {
    return thread_.wait_stop(left);
  } catch (const Error& e) {
    if (thread_.tid() >= 0 && !thread_.stopped()) {
      // Still running our code (a call that blocks): stop it again so that the destructor can
      // put the registers back; the abandoned call then simply never completes.
      try {
        thread_.interrupt_and_wait();
        at_syscall_exit_ = thread_.syscall_stop_kind() == kSyscallInfoExit;
      } catch (const Error& again) {
        throw Error(fmt::format("{}: {}; interrupting it failed: {}", what, e.what(), again.what()));
      }
      throw Error(fmt::format("tid {}: {} did not finish within {} ms (abandoned)", thread_.tid(), what,
                              timeout_.count()));
    }
    throw Error(fmt::format("{}: {}", what, e.what()));
  }
}

void RemoteSyscall::run_batch(uint64_t entry, uint64_t end, uint64_t table) {
  const pid_t tid = thread_.tid();
  if (patch_) fail("tid {}: a batch of remote calls needs code of ours", tid);
  events_.clear();
  at_syscall_exit_ = false;
  user_regs_struct regs = saved_regs_;
  regs.rip = entry;
  regs.rbx = table;
  regs.orig_rax = static_cast<uint64_t>(-1);  // not in a system call: see call()
  thread_.set_regs(regs);
  // A trap raised while SIGTRAP is blocked would reset its action (see call()).
  thread_.set_sigmask(~(uint64_t{1} << (SIGTRAP - 1)));
  thread_.cont(0);
  const auto deadline = Clock::now() + timeout_;
  for (;;) {
    const int status = wait_for_stop(deadline, "a batch of remote calls");
    const int event = status >> 16;
    const int sig = WSTOPSIG(status);
    if (event != 0) {
      unsigned long message = 0;
      ::ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &message);
      if (event != PTRACE_EVENT_STOP) events_.push_back({event, message});
      thread_.cont(0);
      continue;
    }
    // Its own trap, once it has made every call: the end (resuming it with 0 drops it).
    if (sig == SIGTRAP && thread_.get_regs().rip == end) {
      thread_.set_sigmask(~uint64_t{0});
      return;
    }
    if (is_fault_signal(sig)) {
      siginfo_t info{};
      ::ptrace(PTRACE_GETSIGINFO, tid, nullptr, &info);
      fail("tid {}: a batch of remote calls at {:#x} raised {} (si_code {}, address {})", tid, entry, signal_name(sig),
           info.si_code, info.si_addr);
    }
    log::debug("tid {}: {} during a batch of remote calls; deferring it", tid, signal_name(sig));
    deferred_signals_.push_back(sig);
    thread_.cont(0);
  }
}

uint64_t RemoteSyscall::call_checked(std::string_view name, long nr, uint64_t a1, uint64_t a2, uint64_t a3,
                                     uint64_t a4, uint64_t a5, uint64_t a6) {
  long rc = call(nr, a1, a2, a3, a4, a5, a6);
  if (rc < 0 && rc > -4096) fail("pid {}: remote {}: {}", thread_.tid(), name, describe_errno(static_cast<int>(-rc)));
  return static_cast<uint64_t>(rc);
}

// ---------------------------------------------------------------------------------------
// Memory

void read_memory(pid_t pid, uint64_t address, std::span<std::byte> out) {
  size_t done = 0;
  while (done < out.size()) {
    iovec local{out.data() + done, out.size() - done};
    iovec remote{reinterpret_cast<void*>(address + done), out.size() - done};
    ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      fail_errno(n < 0 ? errno : EFAULT, "pid {}: read {} bytes at {:#x} (failed at {:#x} after {} bytes)", pid,
                 out.size(), address, address + done, done);
    done += static_cast<size_t>(n);
  }
}

void write_memory(pid_t pid, uint64_t address, std::span<const std::byte> data) {
  size_t done = 0;
  while (done < data.size()) {
    iovec local{const_cast<std::byte*>(data.data()) + done, data.size() - done};
    iovec remote{reinterpret_cast<void*>(address + done), data.size() - done};
    ssize_t n = ::process_vm_writev(pid, &local, 1, &remote, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      fail_errno(n < 0 ? errno : EFAULT, "pid {}: write {} bytes at {:#x} (failed at {:#x} after {} bytes)", pid,
                 data.size(), address, address + done, done);
    done += static_cast<size_t>(n);
  }
}

}  // namespace stasis::ptrace
