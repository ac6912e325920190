// ptrace control: seizing threads, their registers and signal state, and running single
// system calls inside a stopped thread ("injection"), used by dump (what only the task can
// tell) and by restore (rebuilding a task from outside).
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/user.h>

#include <array>
#include <chrono>
#include <string>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace stasis::ptrace {

struct RseqConfiguration {
  uint64_t address = 0;
  uint32_t length = 0;
  uint32_t flags = 0;
  uint32_t signature = 0;
};

// A thread attached with PTRACE_SEIZE. Detaches on destruction (errors ignored there).
class SeizedThread {
 public:
  // PTRACE_SEIZE with options (PTRACE_O_*, always with PTRACE_O_TRACESYSGOOD); throws naming
  // the tid.
  static SeizedThread seize(pid_t tid, unsigned long options = 0);
  // Adopts a thread already traced by us (e.g. auto-attached by PTRACE_O_TRACECLONE).
  static SeizedThread adopt(pid_t tid);

  SeizedThread(SeizedThread&& other) noexcept;
  SeizedThread& operator=(SeizedThread&& other) noexcept;
  SeizedThread(const SeizedThread&) = delete;
  SeizedThread& operator=(const SeizedThread&) = delete;
  ~SeizedThread();

  pid_t tid() const { return tid_; }

  // How long interrupt_and_wait and wait_stop wait by default before throwing.
  static constexpr std::chrono::milliseconds kDefaultWait{5000};

  // PTRACE_INTERRUPT then wait for the resulting stop (bounded); throws if the thread exits
  // or does not stop in time. Returns at once when the thread is already in a ptrace-stop.
  // A signal-delivery-stop met on the way is forwarded (the signal is delivered, as it would
  // have been without us) and the wait goes on; other PTRACE_EVENT stops are resumed.
  void interrupt_and_wait(std::chrono::milliseconds timeout = kDefaultWait);
  // waitpid(tid, __WALL) for the next stop; returns the raw status. Throws if it exited or
  // did not stop within timeout.
  int wait_stop(std::chrono::milliseconds timeout = kDefaultWait);
  void cont(int signal = 0);
  // PTRACE_SYSCALL: resume until the next system-call entry or exit (or any other stop).
  void cont_to_syscall(int signal = 0);
  // PTRACE_INTERRUPT without waiting: a stopped thread traps (PTRACE_EVENT_STOP) as soon as
  // it is resumed, before it returns to user code.
  void request_interrupt() const;
  // At a SIGTRAP stop: PTRACE_SYSCALL_INFO_ENTRY (1) or _EXIT (2) for a syscall stop, 0 for
  // a signal (PTRACE_GET_SYSCALL_INFO's op).
  int syscall_stop_kind() const;
  // PTRACE_DETACH (interrupting first when the thread is running, as detach needs a stop).
  void detach();
  // Give up ownership without detaching (the caller detaches or the thread is killed).
  void release() {
    tid_ = -1;
    stopped_ = false;
  }
  // True after a wait saw the thread in a ptrace-stop and nothing resumed it since. Resume
  // with cont()/detach() (not a raw ptrace call) so that this stays right.
  bool stopped() const { return stopped_; }
  // The stop signal (SIGSTOP, SIGTSTP, ...) when interrupt_and_wait found the thread in a
  // job-control group-stop rather than running; 0 otherwise.
  int group_stop_signal() const { return group_stop_signal_; }
  // Records what the PTRACE_EVENT_STOP status that answered PTRACE_INTERRUPT says: the
  // interrupt itself (SIGTRAP) or a group-stop (its stop signal).
  void note_interrupt_stop(int status);

  user_regs_struct get_regs() const;
  void set_regs(const user_regs_struct& regs) const;
  // The whole XSAVE area (NT_X86_XSTATE), as large as this CPU needs.
  std::vector<std::byte> get_xstate() const;
  void set_xstate(std::span<const std::byte> xstate) const;
  // The thread's blocked signals. For a thread stopped inside rt_sigsuspend, ppoll, pselect6
  // or epoll_pwait the kernel reports its real mask, not the call's temporary one.
  uint64_t get_sigmask() const;
  void set_sigmask(uint64_t mask) const;
  RseqConfiguration get_rseq() const;
  // Pending signals: the thread's own queue, or the process-wide one.
  std::vector<siginfo_t> peek_siginfo(bool shared) const;

 private:
  explicit SeizedThread(pid_t tid) : tid_(tid) {}
  pid_t tid_ = -1;
  bool stopped_ = false;
  int group_stop_signal_ = 0;
};

// Runs system calls inside a stopped SeizedThread. The thread's registers are saved first and
// put back after every call, so injection leaves no trace in them.
//
// The code page: `syscall; int3` must be executable at code_address in the tracee. Each call
// runs from its syscall-entry stop to its syscall-exit stop (PTRACE_SYSCALL); the int3 is
// never reached. With
// patch = true, those three bytes are written there with PTRACE_POKEDATA for each call and
// the original bytes put back (dump: use the thread's current rip; every other thread of the
// process must be stopped, as they could run the patched bytes). With patch = false, the
// bytes are already there (restore: a page of ours).
//
// The thread must be in a ptrace-stop (interrupt_and_wait) and stays in one between calls
// and after destruction (a SIGTRAP signal-delivery-stop: resume it only with cont(0) or
// detach(), never with a signal). While a RemoteSyscall lives the thread's signal mask is
// "all blocked" so no handler can run in the middle of an injection; the destructor puts the
// saved mask back, so change the mask with SeizedThread::set_sigmask after the injection,
// not with an injected rt_sigprocmask. Must be used from the thread that seized the tracee.
class RemoteSyscall {
 public:
  RemoteSyscall(SeizedThread& thread, uint64_t code_address, bool patch);
  ~RemoteSyscall();  // puts the original registers (and signal mask) back
  RemoteSyscall(const RemoteSyscall&) = delete;
  RemoteSyscall& operator=(const RemoteSyscall&) = delete;

  // Returns the raw result: >= 0 or -errno.
  long call(long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0,
            uint64_t a6 = 0);
  // Throws "pid P: remote NAME: <errno>" when the result is negative.
  uint64_t call_checked(std::string_view name, long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0,
                        uint64_t a4 = 0, uint64_t a5 = 0, uint64_t a6 = 0);

  // Runs the code at `entry` (restore's batch loop, restore/code_page.h) with rbx = table,
  // until it traps with rip at `end` (the SIGTRAP is dropped). No syscall stops: one round
  // trip for the whole batch. SIGTRAP is unblocked meanwhile, so that the trap does not make
  // the kernel reset its action: it must be SIG_DFL in the thread. Only without patch.
  void run_batch(uint64_t entry, uint64_t end, uint64_t table);

  SeizedThread& thread() { return thread_; }

  // Registers before the first call (each call starts from them; the destructor puts them back).
  const user_regs_struct& saved_regs() const { return saved_regs_; }
  // PTRACE_EVENT_* stops seen during the last call (e.g. PTRACE_EVENT_CLONE after an injected
  // clone3 with PTRACE_O_TRACECLONE), each with its PTRACE_GETEVENTMSG value (the new tid).
  struct Event {
    int event;
    unsigned long message;
  };
  const std::vector<Event>& events() const { return events_; }
  // Time limit of one injected call (a blocking call may need more).
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

 private:
  void restore_code(uint64_t original_word);
  // The thread's next stop, by deadline; throws naming `what` (abandoned if still running).
  int wait_for_stop(std::chrono::steady_clock::time_point deadline, const std::string& what);
  void leave_syscall_exit_stop();

  SeizedThread& thread_;
  uint64_t code_address_;
  bool patch_;
  user_regs_struct saved_regs_;
  uint64_t saved_sigmask_ = 0;
  std::vector<int> deferred_signals_;  // unblockable signals that stopped a call: re-sent at the end
  std::vector<Event> events_;
  std::chrono::milliseconds timeout_{10000};
  bool at_syscall_exit_ = false;  // the last call left the thread in its syscall-exit stop
};

// Bulk memory access to a stopped task without running code in it.
void read_memory(pid_t pid, uint64_t address, std::span<std::byte> out);
void write_memory(pid_t pid, uint64_t address, std::span<const std::byte> data);

// The `syscall; int3` sequence for RemoteSyscall.
inline constexpr std::array<uint8_t, 3> kSyscallInsn = {0x0f, 0x05, 0xcc};

}  // namespace stasis::ptrace
