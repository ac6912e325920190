#include "dump/inject.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <elf.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "common/compat.h"
#include "common/error.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/proc.h"

namespace stasis::dump {

namespace {

using Clock = std::chrono::steady_clock;

using compat::kErestartNoHand;
using compat::kErestartNoIntr;
using compat::kErestartRestartBlock;
using compat::kErestartSys;

constexpr auto kCallTimeout = std::chrono::milliseconds(10000);

// The stub. Offset 0 is the `syscall` every call runs at; from offset 2 on, what an untraced
// thread runs after it (rsp = its recovery block):
//   mov eax, 14 (rt_sigprocmask); mov edi, 2 (SIG_SETMASK); mov rsi, rsp; xor edx, edx;
//   mov r10d, 8; syscall            the saved mask (block offset 0)
//   add rsp, 8; pop r15 ... pop rdi  the general registers (block offsets 8 to 127)
//   iretq                            rip, cs, rflags, rsp, ss at once (block offsets 128 to 167)
// iretq from user mode to user mode is allowed; it is the only way to load rsp and rip
// together without a spare register or a write to the thread's stack (its red zone is live).
// The first 10 bytes are the entry of call_then_close: the call, then close(its result),
// falling through into the stub proper (kCallAt), whose syscall runs the close.
constexpr size_t kCallAt = 10;
constexpr std::array<uint8_t, 64> kStub = {
    0x0f, 0x05,                                // syscall         (call_then_close: the call)
    0x48, 0x89, 0xc7,                          // mov rdi, rax
    0xb8, 0x03, 0x00, 0x00, 0x00,              // mov eax, 3      (close)
    0x0f, 0x05,                                // syscall         (every injected call runs here)
    0xb8, 0x0e, 0x00, 0x00, 0x00,              // mov eax, 14
    0xbf, 0x02, 0x00, 0x00, 0x00,              // mov edi, 2
    0x48, 0x89, 0xe6,                          // mov rsi, rsp
    0x31, 0xd2,                                // xor edx, edx
    0x41, 0xba, 0x08, 0x00, 0x00, 0x00,        // mov r10d, 8
    0x0f, 0x05,                                // syscall
    0x48, 0x83, 0xc4, 0x08,                    // add rsp, 8
    0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c,  // pop r15, r14, r13, r12
    0x5d, 0x5b,                                // pop rbp, rbx
    0x41, 0x5b, 0x41, 0x5a, 0x41, 0x59, 0x41, 0x58,  // pop r11, r10, r9, r8
    0x58, 0x59, 0x5a, 0x5e, 0x5f,              // pop rax, rcx, rdx, rsi, rdi
    0x48, 0xcf,                                // iretq
};

// What the stub reads, in its order.
struct RecoveryBlock {
  uint64_t sigmask;
  uint64_t r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi;
  uint64_t rip, cs, rflags, rsp, ss;  // the iretq frame
};
static_assert(sizeof(RecoveryBlock) == 168);
constexpr size_t kBlockRoom = 176;  // a multiple of 16
constexpr uint64_t kRedZone = 128;   // below rsp, the thread's own (x86-64 ABI)
constexpr size_t kStubRoom = 64;     // at the end of the vDSO mapping

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

bool is_fault_signal(int sig) {
  return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGSYS;
}

bool is_syscall_stop(int status) { return WIFSTOPPED(status) && WSTOPSIG(status) == (SIGTRAP | 0x80); }

// Where the stub can go: the end of the zero padding that follows the last byte of the vDSO's
// ELF image (section headers last) in its executable mapping, which nothing executes or
// parses. Returns the address and the bytes to put back there after (zeros), or address 0
// when there is no such room.
struct StubPlace {
  uint64_t address = 0;
  std::vector<std::byte> original;
};
StubPlace find_stub_place(pid_t pid) {
  for (const auto& m : proc::read_maps(pid)) {
    if (m.kind != proc::VmaKind::Vdso || !m.exec) continue;
    std::vector<std::byte> image(m.size());
    try {
      ptrace::read_memory(pid, m.start, image);
    } catch (const Error& e) {
      log::debug("pid {}: reading the vDSO: {}", pid, e.what());
      return {};
    }
    if (image.size() < sizeof(Elf64_Ehdr)) return {};
    Elf64_Ehdr eh;
    std::memcpy(&eh, image.data(), sizeof eh);
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64) return {};
    uint64_t content_end = eh.e_shoff + uint64_t{eh.e_shnum} * eh.e_shentsize;
    content_end = std::max<uint64_t>(content_end, eh.e_phoff + uint64_t{eh.e_phnum} * eh.e_phentsize);
    for (unsigned i = 0; i < eh.e_shnum; ++i) {
      const uint64_t at = eh.e_shoff + uint64_t{i} * eh.e_shentsize;
      if (at + sizeof(Elf64_Shdr) > image.size()) return {};
      Elf64_Shdr sh;
      std::memcpy(&sh, image.data() + at, sizeof sh);
      if (sh.sh_type != SHT_NOBITS) content_end = std::max<uint64_t>(content_end, sh.sh_offset + sh.sh_size);
    }
    if (content_end + kStubRoom > image.size()) return {};
    const uint64_t offset = image.size() - kStubRoom;
    std::vector<std::byte> here(image.begin() + static_cast<long>(offset),
                                image.begin() + static_cast<long>(offset + kStub.size()));
    // Zeros, or our stub left by a dumper that was killed.
    const bool zeros = std::all_of(here.begin(), here.end(), [](std::byte b) { return b == std::byte{0}; });
    if (!zeros && std::memcmp(here.data(), kStub.data(), kStub.size()) != 0) return {};
    return {m.start + offset, std::vector<std::byte>(kStub.size())};  // padding: zeros go back
  }
  return {};
}

// Tests kill the dumper at one exact step of the injection: STASIS_FAULT=dump-kill-at-step-N
// SIGKILLs us at the Nth state change of a thread (tests/dump_kill_test.cc).
int g_steps = 0;
void step() {
  ++g_steps;
  const char* wanted = std::getenv("STASIS_FAULT");
  if (wanted && std::string_view(wanted).rfind("dump-kill-at-step-", 0) == 0 &&
      fault_active(fmt::format("dump-kill-at-step-{}", g_steps)))
    ::raise(SIGKILL);
}

// Brings a thread that ran an injected call back to an interrupt stop, then puts its signal
// mask and registers back (in that order: until the registers are back they point at the
// stub, which sets the mask itself). The interrupt stop matters: only on the way out of it
// does the kernel apply its syscall-restart logic to the saved registers, and a thread that
// loses its tracer in a signal-delivery-stop would get that signal.
void back_to_saved(ptrace::SeizedThread& t, const user_regs_struct& saved, uint64_t saved_mask,
                   std::vector<int>& deferred) {
  if (t.tid() < 0) return;  // it exited
  t.request_interrupt();
  step();
  if (t.stopped()) t.cont(0);
  step();
  for (;;) {
    int status = t.wait_stop();
    step();
    if ((status >> 16) == PTRACE_EVENT_STOP) break;
    if (!is_syscall_stop(status) && (status >> 16) == 0) {
      const int sig = WSTOPSIG(status);
      if (is_fault_signal(sig)) {
        // Raised by the borrowed registers: dropped, and the thread's own context back
        // first, or resuming would fault again.
        t.set_sigmask(saved_mask);
        t.set_regs(saved);
      } else {
        deferred.push_back(sig);  // suppressed now, sent again below
      }
    }
    t.cont(0);
  }
  t.set_sigmask(saved_mask);
  step();
  t.set_regs(saved);
  step();
  // Signals queue again once the thread resumes (their siginfo is not kept: tkill).
  for (int sig : deferred)
    if (::syscall(SYS_tkill, t.tid(), sig) < 0)
      log::warn("tid {}: re-sending {} after injection failed: {}", t.tid(), signal_name(sig), describe_errno(errno));
}

}  // namespace

user_regs_struct resume_registers(const user_regs_struct& saved) {
  user_regs_struct r = saved;
  if (static_cast<int64_t>(r.orig_rax) < 0) return r;
  const auto rax = static_cast<int64_t>(r.rax);
  if (rax == -kErestartSys || rax == -kErestartNoIntr || rax == -kErestartNoHand) {
    r.rax = r.orig_rax;
    r.rip -= 2;
  } else if (rax == -kErestartRestartBlock) {
    r.rax = SYS_restart_syscall;
    r.rip -= 2;
  }
  return r;
}

Injector::Injector(pid_t pid, ptrace::SeizedThread& thread, size_t threads)
    : pid_(pid), thread_(thread), slots_(std::max<size_t>(threads, 1)) {
  size_ = kScratchSize + slots_ * kSlotSize;
  const std::string mem_path = fmt::format("/proc/{}/mem", pid);
  mem_ = UniqueFd(::open(mem_path.c_str(), O_RDWR | O_CLOEXEC));
  if (!mem_) fail_errno(errno, "open {}", mem_path);

  // STASIS_FAULT=dump-no-vdso-stub: as if the vDSO had no room (tests of the fallback).
  StubPlace place = fault_active("dump-no-vdso-stub") ? StubPlace{} : find_stub_place(pid);
  if (place.address) {
    // Written through /proc/PID/mem, which may write into the r-x vDSO (the page becomes the
    // process's own copy, as for a debugger's breakpoint).
    try {
      write_forced(place.address, std::as_bytes(std::span(kStub)));
      step();
      stub_ = place.address + kCallAt;
      stub_original_ = std::move(place.original);
    } catch (const Error& e) {
      log::debug("pid {}: writing the injection stub into the vDSO: {}", pid, e.what());
    }
  }
  if (!stub_) {
    log::warn("pid {}: no room for the injection stub in its vDSO; system calls are injected at each thread's "
              "own code, which a stasis killed during the dump would leave changed",
              pid);
  }
  try {
    long addr = call_checked(thread, "mmap (scratch area)", SYS_mmap, 0, size_, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, static_cast<uint64_t>(-1), 0);
    scratch_ = static_cast<uint64_t>(addr);
  } catch (...) {
    remove_stub();
    throw;
  }
}

Injector::~Injector() {
  try {
    unmap();
  } catch (const std::exception& e) {
    log::error("pid {}: could not unmap the scratch area at {:#x}: {}", pid_, scratch_, e.what());
  }
  remove_stub();
}

void Injector::unmap() {
  if (!scratch_) return;
  const uint64_t addr = std::exchange(scratch_, 0);
  call_checked(thread_, "munmap (scratch area)", SYS_munmap, addr, size_);
}

void Injector::remove_stub() {
  if (!stub_) return;
  const uint64_t at = std::exchange(stub_, 0) - kCallAt;
  try {
    write_forced(at, stub_original_);
    step();
    log::debug("pid {}: injection done in {} steps", pid_, g_steps);
  } catch (const std::exception& e) {
    // Harmless: the bytes sit in padding nothing runs.
    log::warn("pid {}: could not clear the injection stub from its vDSO padding: {}", pid_, e.what());
  }
}

long Injector::call(ptrace::SeizedThread& thread, long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                    uint64_t a5, uint64_t a6) {
  if (stub_) return run(thread, nr, Args{a1, a2, a3, a4, a5, a6});
  ptrace::RemoteSyscall remote(thread, thread.get_regs().rip, /*patch=*/true);
  return remote.call(nr, a1, a2, a3, a4, a5, a6);
}

long Injector::call_checked(ptrace::SeizedThread& thread, std::string_view name, long nr, uint64_t a1, uint64_t a2,
                            uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6) {
  long rc = call(thread, nr, a1, a2, a3, a4, a5, a6);
  if (rc < 0 && rc > -4096) fail_errno(static_cast<int>(-rc), "tid {}: injected {}", thread.tid(), name);
  return rc;
}

long Injector::call_then_close(ptrace::SeizedThread& thread, long nr, uint64_t a1,
                               const std::function<void(long)>& take) {
  if (stub_) return run(thread, nr, Args{a1, 0, 0, 0, 0, 0}, &take);
  long fd = call(thread, nr, a1);
  if (fd < 0) return fd;
  take(fd);
  call(thread, SYS_close, static_cast<uint64_t>(fd));
  return fd;
}

long Injector::run(ptrace::SeizedThread& t, long nr, const Args& a, const std::function<void(long)>* then_close) {
  const pid_t tid = t.tid();
  if (!t.stopped()) fail("tid {}: injecting a system call needs a stopped thread", tid);
  const user_regs_struct saved = t.get_regs();
  const uint64_t saved_mask = t.get_sigmask();

  user_regs_struct regs = saved;
  regs.rsp = write_recovery_block(tid, saved, saved_mask);
  step();
  // call_then_close: from the entry before the stub, so that the thread runs the close
  // itself (and then the stub) whatever becomes of us.
  regs.rip = then_close ? stub_ - kCallAt : stub_;
  regs.rax = static_cast<uint64_t>(nr);
  // orig_rax = -1: not inside a system call, so that resuming from this stop does not apply
  // the restart logic of an interrupted call to the registers just set (the recovery block
  // has the restart applied already; the saved orig_rax comes back with the saved registers).
  regs.orig_rax = static_cast<uint64_t>(-1);
  regs.rdi = a[0];
  regs.rsi = a[1];
  regs.rdx = a[2];
  regs.r10 = a[3];
  regs.r8 = a[4];
  regs.r9 = a[5];

  std::vector<int> deferred;
  // From the first register change on, whatever happens, the thread gets its state back.
  struct Restore {
    ptrace::SeizedThread& t;
    const user_regs_struct& saved;
    uint64_t mask;
    std::vector<int>& deferred;
    bool armed = false;
    ~Restore() {
      if (!armed) return;
      try {
        back_to_saved(t, saved, mask, deferred);
      } catch (const std::exception& e) {
        log::error("tid {}: putting back registers after injection failed: {}", t.tid(), e.what());
      }
    }
  } restore{t, saved, saved_mask, deferred};

  restore.armed = true;
  t.set_regs(regs);
  step();
  // Blocked only now that the registers lead to the stub (which unblocks them): a handler
  // must not run on borrowed registers, and a pending signal keeps its siginfo this way.
  t.set_sigmask(~uint64_t{0});
  step();

  t.cont_to_syscall(0);
  const auto deadline = Clock::now() + kCallTimeout;
  int syscall_stops = 0;
  long result = 0;
  bool closing = false;  // then_close: the close call runs
  for (;;) {
    const auto left = std::max(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()),
                               std::chrono::milliseconds(0));
    int status = 0;
    try {
      status = t.wait_stop(left);
    } catch (const Error& e) {
      throw Error(fmt::format("tid {}: injected system call {}: {}", tid, nr, e.what()));
    }
    step();
    if (is_syscall_stop(status)) {
      if (++syscall_stops == 2) {
        if (closing) break;  // the close returned; result is the first call's
        result = static_cast<long>(t.get_regs().rax);
        if (!then_close) break;
        if (result >= 0) (*then_close)(result);  // the thread is at the exit stop: fd is there
        closing = true;
        syscall_stops = 0;
      }
      t.cont_to_syscall(0);
      continue;
    }
    if ((status >> 16) != 0) {  // a group-stop or another ptrace event: go on
      t.cont_to_syscall(0);
      continue;
    }
    const int sig = WSTOPSIG(status);
    if (is_fault_signal(sig)) {
      siginfo_t info{};
      ::ptrace(PTRACE_GETSIGINFO, tid, nullptr, &info);
      fail("tid {}: injected system call {} at {:#x} raised {} (si_code {}, address {})", tid, nr, stub_,
           signal_name(sig), info.si_code, info.si_addr);
    }
    // SIGSTOP (the others are blocked): held back, sent again at the end.
    log::debug("tid {}: {} during injected system call {}; deferring it", tid, signal_name(sig), nr);
    deferred.push_back(sig);
    t.cont_to_syscall(0);
  }
  restore.armed = false;
  back_to_saved(t, saved, saved_mask, deferred);
  return result;
}

uint64_t Injector::write_recovery_block(pid_t tid, const user_regs_struct& saved, uint64_t saved_mask) {
  const user_regs_struct r = resume_registers(saved);
  RecoveryBlock b{};
  b.sigmask = saved_mask;
  b.r15 = r.r15;
  b.r14 = r.r14;
  b.r13 = r.r13;
  b.r12 = r.r12;
  b.rbp = r.rbp;
  b.rbx = r.rbx;
  b.r11 = r.r11;
  b.r10 = r.r10;
  b.r9 = r.r9;
  b.r8 = r.r8;
  b.rax = r.rax;
  b.rcx = r.rcx;
  b.rdx = r.rdx;
  b.rsi = r.rsi;
  b.rdi = r.rdi;
  b.rip = r.rip;
  b.cs = r.cs;
  b.rflags = r.eflags;
  b.rsp = r.rsp;
  b.ss = r.ss;
  const auto bytes = std::as_bytes(std::span(&b, 1));
  // On the thread's own stack below its red zone, where a signal frame would go (so a handler
  // that runs when the stub unblocks signals lands below it, as it would anyway).
  const uint64_t on_stack = (saved.rsp - kRedZone - kBlockRoom) & ~uint64_t{15};
  try {
    // STASIS_FAULT=dump-block-in-scratch: as if there were no room below (tests of the slots).
    if (scratch_ && fault_active("dump-block-in-scratch")) fail("no room below the stack pointer (STASIS_FAULT)");
    write_forced(on_stack, bytes);
    return on_stack;
  } catch (const Error& e) {
    if (!scratch_) throw Error(fmt::format("tid {}: no room for the recovery block below its stack pointer: {}", tid, e.what()));
    log::debug("tid {}: recovery block in the scratch area ({})", tid, e.what());
  }
  // Its slot of the scratch area instead: the block at the top, room below for a handler.
  auto [it, added] = slot_of_.try_emplace(tid, slot_of_.size());
  if (it->second >= slots_) fail("pid {}: no scratch slot for tid {} ({} threads planned)", pid_, tid, slots_);
  const uint64_t address = scratch_ + kScratchSize + (it->second + 1) * kSlotSize - kBlockRoom;
  write_forced(address, bytes);
  return address;
}

void Injector::write_forced(uint64_t address, std::span<const std::byte> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(mem_.get(), data.data() + done, data.size() - done, static_cast<off_t>(address + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      fail_errno(n < 0 ? errno : EIO, "pid {}: write {} bytes at {:#x} through /proc/{}/mem", pid_, data.size(),
                 address, pid_);
    done += static_cast<size_t>(n);
  }
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
