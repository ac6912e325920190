// SeizedThread and RemoteSyscall against real children: seize, interrupt, registers, xstate,
// signal state, rseq, injection of system calls, memory access, and a clean resume.
#include "common/ptrace.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <chrono>
#include <cstring>
#include <thread>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/support/test_util.h"

namespace stasis::ptrace {
namespace {

using namespace std::chrono_literals;

using Child = stasis::test::ForkedChild;

struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    if (pipe(fds) < 0) throw std::runtime_error("pipe");
    r = fds[0];
    w = fds[1];
  }
  ~Pipe() {
    close(r);
    close(w);
  }
};

// Reads exactly n bytes within timeout; returns what was read.
std::string read_with_timeout(int fd, size_t n, std::chrono::milliseconds timeout) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.size() < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[256];
    ssize_t r = read(fd, buf, std::min(sizeof buf, n - out.size()));
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

void write_str(int fd, const std::string& s) { ASSERT_EQ(write(fd, s.data(), s.size()), static_cast<ssize_t>(s.size())); }

// Child: says "R", then blocks in read(in) for 5 bytes and echoes them to out.
void echo_once(int in, int out) {
  if (write(out, "R", 1) != 1) _exit(2);
  char buf[5];
  size_t got = 0;
  while (got < sizeof buf) {
    ssize_t r = read(in, buf + got, sizeof buf - got);
    if (r <= 0) _exit(3);
    got += static_cast<size_t>(r);
  }
  if (write(out, buf, sizeof buf) != 5) _exit(4);
}

bool same_regs(const user_regs_struct& a, const user_regs_struct& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

TEST(Ptrace, InjectIntoThreadBlockedInReadAndResume) {
  Pipe to_child, from_child;
  Child child([&] { echo_once(to_child.r, from_child.w); });
  ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");
  std::this_thread::sleep_for(50ms);  // let it block in read()

  SeizedThread thread = SeizedThread::seize(child.pid());
  thread.interrupt_and_wait();
  EXPECT_TRUE(thread.stopped());
  user_regs_struct before = thread.get_regs();
  EXPECT_EQ(static_cast<long>(before.orig_rax), SYS_read);
  EXPECT_EQ(static_cast<long>(before.rax), -512);  // -ERESTARTSYS: interrupted, to be restarted

  {
    RemoteSyscall remote(thread, before.rip, /*patch=*/true);
    EXPECT_EQ(remote.call(SYS_getpid), child.pid());
    uint64_t page = remote.call_checked("mmap", SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE,
                                        MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0);
    ASSERT_NE(page, 0u);
    std::string text = "written from outside";
    write_memory(child.pid(), page + 100, std::as_bytes(std::span(text)));
    std::string back(text.size(), '\0');
    read_memory(child.pid(), page + 100, std::as_writable_bytes(std::span(back)));
    EXPECT_EQ(back, text);
    EXPECT_EQ(remote.call(SYS_munmap, page, 4096), 0);
    EXPECT_EQ(remote.call(SYS_close, 9999), -EBADF);
    try {
      remote.call_checked("close", SYS_close, 9999);
      ADD_FAILURE() << "call_checked did not throw";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("EBADF"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("close"), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(same_regs(thread.get_regs(), before));
  thread.detach();

  // The read() that was interrupted is restarted and gets the bytes written after detach.
  write_str(to_child.w, "hello");
  EXPECT_EQ(read_with_timeout(from_child.r, 5, 5s), "hello");
  int status = 0;
  pid_t pid = child.pid();
  ASSERT_TRUE([&] {
    for (int i = 0; i < 500; ++i) {
      if (waitpid(pid, &status, WNOHANG) == pid) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(Ptrace, RegistersXstateSigmaskRseq) {
  Pipe to_child, from_child;
  Child child([&] { echo_once(to_child.r, from_child.w); });
  ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");

  SeizedThread thread = SeizedThread::seize(child.pid());
  thread.interrupt_and_wait();
  thread.interrupt_and_wait();  // already stopped: returns at once

  user_regs_struct regs = thread.get_regs();
  EXPECT_NE(regs.rip, 0u);
  EXPECT_NE(regs.rsp, 0u);
  EXPECT_NE(regs.fs_base, 0u);  // glibc's TLS
  thread.set_regs(regs);
  EXPECT_TRUE(same_regs(thread.get_regs(), regs));

  std::vector<std::byte> xstate = thread.get_xstate();
  EXPECT_GE(xstate.size(), 576u);  // legacy FXSAVE area + XSAVE header at least
  thread.set_xstate(xstate);
  EXPECT_EQ(thread.get_xstate(), xstate);

  uint64_t mask = thread.get_sigmask();
  uint64_t wanted = mask | (1ull << (SIGUSR2 - 1)) | (1ull << (SIGHUP - 1));
  thread.set_sigmask(wanted);
  EXPECT_EQ(thread.get_sigmask(), wanted);
  thread.set_sigmask(mask);
  EXPECT_EQ(thread.get_sigmask(), mask);

  RseqConfiguration rseq = thread.get_rseq();
  EXPECT_NE(rseq.address, 0u) << "glibc 2.35+ registers rseq in every thread";
  EXPECT_GE(rseq.length, 32u);
  EXPECT_EQ(rseq.signature, 0x53053053u);

  thread.detach();
  write_str(to_child.w, "abcde");
  EXPECT_EQ(read_with_timeout(from_child.r, 5, 5s), "abcde");
}

TEST(Ptrace, PeekSiginfoSeesBlockedPendingSignals) {
  Pipe to_child, from_child;
  Child child([&] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    echo_once(to_child.r, from_child.w);
  });
  ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");
  ASSERT_EQ(kill(child.pid(), SIGUSR1), 0);                            // process-wide queue
  ASSERT_EQ(syscall(SYS_tgkill, child.pid(), child.pid(), SIGUSR2), 0);  // the thread's own queue

  SeizedThread thread = SeizedThread::seize(child.pid());
  thread.interrupt_and_wait();
  std::vector<siginfo_t> shared = thread.peek_siginfo(true);
  ASSERT_EQ(shared.size(), 1u);
  EXPECT_EQ(shared[0].si_signo, SIGUSR1);
  EXPECT_EQ(shared[0].si_pid, getpid());
  std::vector<siginfo_t> own = thread.peek_siginfo(false);
  ASSERT_EQ(own.size(), 1u);
  EXPECT_EQ(own[0].si_signo, SIGUSR2);
  // Injection must not deliver or lose them.
  {
    RemoteSyscall remote(thread, thread.get_regs().rip, true);
    EXPECT_EQ(remote.call(SYS_getppid), getpid());
  }
  EXPECT_EQ(thread.peek_siginfo(true).size(), 1u);
  EXPECT_EQ(thread.peek_siginfo(false).size(), 1u);
  thread.detach();
  write_str(to_child.w, "12345");
  EXPECT_EQ(read_with_timeout(from_child.r, 5, 5s), "12345");
}

TEST(Ptrace, BusyLoopKeepsRunningAfterInjectionIntoOwnCodePage) {
  auto* counter = static_cast<std::atomic<uint64_t>*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(counter, MAP_FAILED);
  new (counter) std::atomic<uint64_t>(0);
  {
    Child child([&] {
      for (;;) counter->fetch_add(1, std::memory_order_relaxed);
    });
    ASSERT_TRUE([&] {
      for (int i = 0; i < 500 && counter->load() == 0; ++i) std::this_thread::sleep_for(1ms);
      return counter->load() != 0;
    }());
    SeizedThread thread = SeizedThread::seize(child.pid());
    thread.interrupt_and_wait();
    user_regs_struct before = thread.get_regs();
    uint64_t stopped_at = counter->load();
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(counter->load(), stopped_at);  // really stopped

    {
      // Restore's way: a page of ours holding `syscall; int3`, no patching.
      RemoteSyscall patching(thread, before.rip, true);
      uint64_t page = patching.call_checked("mmap", SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                                            MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0);
      write_memory(child.pid(), page, std::as_bytes(std::span(kSyscallInsn)));
      {
        RemoteSyscall own(thread, page, false);
        auto start = std::chrono::steady_clock::now();
        constexpr int kCalls = 1000;
        for (int i = 0; i < kCalls; ++i) ASSERT_EQ(own.call(SYS_getpid), child.pid());
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
        RecordProperty("injected_getpid_us", static_cast<int>(us.count() / kCalls));
        std::printf("injected getpid round trip: %.1f us\n", static_cast<double>(us.count()) / kCalls);
      }
      EXPECT_EQ(patching.call(SYS_munmap, page, 4096), 0);
    }
    EXPECT_TRUE(same_regs(thread.get_regs(), before));
    thread.detach();
    EXPECT_TRUE([&] {
      for (int i = 0; i < 500; ++i) {
        if (counter->load() > stopped_at + 1000) return true;
        std::this_thread::sleep_for(1ms);
      }
      return false;
    }());
  }
  munmap(counter, 4096);
}

TEST(Ptrace, NanosleepRestartBlockSurvivesInjection) {
  Pipe from_child;
  Child child([&] {
    if (write(from_child.w, "R", 1) != 1) _exit(2);
    timespec ts{0, 300'000'000};
    if (nanosleep(&ts, nullptr) != 0) _exit(3);
    if (write(from_child.w, "W", 1) != 1) _exit(4);
  });
  ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");
  std::this_thread::sleep_for(50ms);
  SeizedThread thread = SeizedThread::seize(child.pid());
  thread.interrupt_and_wait();
  {
    RemoteSyscall remote(thread, thread.get_regs().rip, true);
    EXPECT_EQ(remote.call(SYS_getpid), child.pid());
  }
  thread.detach();
  EXPECT_EQ(read_with_timeout(from_child.r, 1, 5s), "W");
  int status = 0;
  for (int i = 0; i < 500 && waitpid(child.pid(), &status, WNOHANG) != child.pid(); ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

// Same address in the forked child: the injected nanosleep reads it there.
timespec g_injected_sleep{0, 200'000'000};
int g_handler_pipe = -1;
void write_h(int) { (void)!write(g_handler_pipe, "H", 1); }

// A thread in rt_sigsuspend runs with a temporary mask that the kernel swaps back when the
// call ends; injection must not break that, and a signal that arrives during an injected
// call must neither run a handler on borrowed registers nor get lost.
TEST(Ptrace, SignalDuringInjectionIntoSigsuspendIsHeldBack) {
  Pipe from_child;
  g_handler_pipe = from_child.w;
  Child child([&] {
    signal(SIGUSR1, write_h);
    sigset_t block, empty, now;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigprocmask(SIG_SETMASK, &block, nullptr);
    sigemptyset(&empty);
    if (write(from_child.w, "R", 1) != 1) _exit(2);
    sigsuspend(&empty);
    sigprocmask(SIG_SETMASK, nullptr, &now);
    bool right = sigismember(&now, SIGUSR2) && !sigismember(&now, SIGUSR1);
    if (write(from_child.w, right ? "M" : "X", 1) != 1) _exit(3);
  });
  ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");
  std::this_thread::sleep_for(50ms);

  SeizedThread thread = SeizedThread::seize(child.pid());
  thread.interrupt_and_wait();
  user_regs_struct before = thread.get_regs();
  ASSERT_EQ(static_cast<long>(before.orig_rax), SYS_rt_sigsuspend);
  // The kernel reports the real mask (SIGUSR2), not sigsuspend's temporary empty one.
  EXPECT_EQ(thread.get_sigmask(), 1u << (SIGUSR2 - 1));
  {
    RemoteSyscall remote(thread, before.rip, true);
    std::thread sender([&] {
      std::this_thread::sleep_for(50ms);
      kill(child.pid(), SIGUSR1);
    });
    long rc = remote.call(SYS_nanosleep, reinterpret_cast<uint64_t>(&g_injected_sleep), 0);
    sender.join();
    EXPECT_EQ(rc, 0);
    EXPECT_EQ(read_with_timeout(from_child.r, 1, 50ms), "");  // no handler ran during injection
  }
  EXPECT_TRUE(same_regs(thread.get_regs(), before));
  thread.detach();
  EXPECT_EQ(read_with_timeout(from_child.r, 2, 5s), "HM");
}

char proc_state(pid_t pid) {
  std::string stat;
  FILE* f = fopen(fmt::format("/proc/{}/stat", pid).c_str(), "r");
  if (!f) return '?';
  char buf[512];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  stat.assign(buf, n);
  size_t close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

// SIGSTOP cannot be blocked: when it stops an injected call it is held back and sent again
// after the registers are restored, so the task stops only once it is ours again.
TEST(Ptrace, UnblockableSignalDuringInjectionIsResent) {
  Pipe to_child, from_child;
  Child child([&] { echo_once(to_child.r, from_child.w); });
  ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");
  std::this_thread::sleep_for(50ms);
  SeizedThread thread = SeizedThread::seize(child.pid());
  thread.interrupt_and_wait();
  user_regs_struct before = thread.get_regs();
  {
    RemoteSyscall remote(thread, before.rip, true);
    std::thread sender([&] {
      std::this_thread::sleep_for(50ms);
      kill(child.pid(), SIGSTOP);
    });
    long rc = remote.call(SYS_nanosleep, reinterpret_cast<uint64_t>(&g_injected_sleep), 0);
    sender.join();
    EXPECT_EQ(rc, 0);
  }
  EXPECT_TRUE(same_regs(thread.get_regs(), before));
  thread.detach();
  bool stopped = false;
  for (int i = 0; i < 500 && !stopped; ++i) {
    stopped = proc_state(child.pid()) == 'T';
    if (!stopped) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(stopped) << "the held-back SIGSTOP was not sent again";
  kill(child.pid(), SIGCONT);
  write_str(to_child.w, "later");
  EXPECT_EQ(read_with_timeout(from_child.r, 5, 5s), "later");
}

std::vector<pid_t> tasks_of(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec))
    out.push_back(std::stoi(e.path().filename().string()));
  std::sort(out.begin(), out.end());
  return out;
}

// Child with a second thread that echoes 5 bytes from in to out; the main thread waits in join.
void threaded_echo(int in, int out) {
  std::thread t([&] { echo_once(in, out); });
  t.join();
}

TEST(Ptrace, InjectIntoSecondThreadOfProcess) {
  Pipe to_child, from_child;
  Child child([&] { threaded_echo(to_child.r, from_child.w); });
  ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");
  std::this_thread::sleep_for(50ms);
  std::vector<pid_t> tids = tasks_of(child.pid());
  ASSERT_EQ(tids.size(), 2u);
  std::vector<SeizedThread> threads;
  for (pid_t tid : tids) {
    threads.push_back(SeizedThread::seize(tid));
    threads.back().interrupt_and_wait();
  }
  SeizedThread& second = threads[1].tid() == child.pid() ? threads[0] : threads[1];
  user_regs_struct before = second.get_regs();
  EXPECT_EQ(static_cast<long>(before.orig_rax), SYS_read);
  {
    RemoteSyscall remote(second, before.rip, true);
    EXPECT_EQ(remote.call(SYS_gettid), second.tid());
    EXPECT_EQ(remote.call(SYS_getpid), child.pid());
  }
  EXPECT_TRUE(same_regs(second.get_regs(), before));
  threads.clear();  // detaches both
  write_str(to_child.w, "twoth");
  EXPECT_EQ(read_with_timeout(from_child.r, 5, 5s), "twoth");
}

// With PTRACE_O_TRACECLONE a new thread is traced from birth; adopt() takes it over.
TEST(Ptrace, AdoptThreadCreatedWhileTraced) {
  Pipe to_child, from_child;
  Child child([&] {
    if (write(from_child.w, "R", 1) != 1) _exit(2);
    char go;
    if (read(to_child.r, &go, 1) != 1) _exit(3);
    threaded_echo(to_child.r, from_child.w);
  });
  ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");
  SeizedThread leader = SeizedThread::seize(child.pid(), PTRACE_O_TRACECLONE);
  write_str(to_child.w, "g");  // now it creates its thread
  int status = leader.wait_stop();
  ASSERT_EQ(status >> 16, PTRACE_EVENT_CLONE) << std::hex << status;
  unsigned long new_tid = 0;
  ASSERT_EQ(::ptrace(PTRACE_GETEVENTMSG, child.pid(), nullptr, &new_tid), 0);
  SeizedThread second = SeizedThread::adopt(static_cast<pid_t>(new_tid));
  status = second.wait_stop();
  EXPECT_EQ(status >> 16, PTRACE_EVENT_STOP) << std::hex << status;  // born stopped
  EXPECT_TRUE(second.stopped());
  EXPECT_NE(second.get_regs().rip, 0u);
  leader.cont(0);
  second.detach();
  leader.detach();
  ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");
  write_str(to_child.w, "adopt");
  EXPECT_EQ(read_with_timeout(from_child.r, 5, 5s), "adopt");
}

// A process stopped by SIGSTOP stays stopped across seize, injection and detach.
TEST(Ptrace, StoppedProcessStaysStopped) {
  Pipe to_child, from_child;
  Child child([&] { echo_once(to_child.r, from_child.w); });
  ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");
  ASSERT_EQ(kill(child.pid(), SIGSTOP), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child.pid(), &status, WUNTRACED), child.pid());
  ASSERT_TRUE(WIFSTOPPED(status));
  SeizedThread thread = SeizedThread::seize(child.pid());
  thread.interrupt_and_wait();
  {
    RemoteSyscall remote(thread, thread.get_regs().rip, true);
    EXPECT_EQ(remote.call(SYS_getpid), child.pid());
  }
  thread.detach();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(proc_state(child.pid()), 'T');
  write_str(to_child.w, "stops");
  EXPECT_EQ(read_with_timeout(from_child.r, 5, 200ms), "");  // still stopped: no echo
  kill(child.pid(), SIGCONT);
  EXPECT_EQ(read_with_timeout(from_child.r, 5, 5s), "stops");
}

// An injected call that blocks past the timeout is abandoned: the thread is stopped again,
// its registers come back, and it carries on as before.
TEST(Ptrace, BlockingInjectedCallTimesOutAndIsAbandoned) {
  Pipe to_child, from_child, never;
  Child child([&] { echo_once(to_child.r, from_child.w); });
  ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");
  std::this_thread::sleep_for(50ms);
  SeizedThread thread = SeizedThread::seize(child.pid());
  thread.interrupt_and_wait();
  user_regs_struct before = thread.get_regs();
  {
    RemoteSyscall remote(thread, before.rip, true);
    remote.set_timeout(200ms);
    // read() on a pipe nobody writes to (the child inherited never.r): blocks forever.
    try {
      remote.call(SYS_read, static_cast<uint64_t>(never.r), before.rsp - 4096, 1);
      ADD_FAILURE() << "blocking call did not time out";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("did not finish within 200 ms"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(thread.stopped());
    EXPECT_EQ(remote.call(SYS_getpid), child.pid());  // still usable
  }
  EXPECT_TRUE(same_regs(thread.get_regs(), before));
  thread.detach();
  write_str(to_child.w, "again");
  EXPECT_EQ(read_with_timeout(from_child.r, 5, 5s), "again");
}

TEST(Ptrace, FaultInInjectedCodeIsReportedAndStateRestored) {
  Pipe to_child, from_child;
  Child child([&] { echo_once(to_child.r, from_child.w); });
  ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");
  SeizedThread thread = SeizedThread::seize(child.pid());
  thread.interrupt_and_wait();
  user_regs_struct before = thread.get_regs();
  {
    RemoteSyscall bad(thread, 0x1000, false);  // nothing mapped there: SIGSEGV
    try {
      bad.call(SYS_getpid);
      ADD_FAILURE() << "no error for an unmapped code address";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("SIGSEGV"), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(same_regs(thread.get_regs(), before));
  thread.detach();  // the SIGSEGV is suppressed
  write_str(to_child.w, "after");
  EXPECT_EQ(read_with_timeout(from_child.r, 5, 5s), "after");
}

volatile sig_atomic_t g_traps = 0;
void on_trap(int) { g_traps = g_traps + 1; }

// The SigIgn and SigCgt lines of /proc/PID/status.
std::string signal_dispositions(pid_t pid) {
  std::string out;
  FILE* f = fopen(fmt::format("/proc/{}/status", pid).c_str(), "r");
  if (!f) return out;
  char line[256];
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "SigIgn:", 7) == 0 || strncmp(line, "SigCgt:", 7) == 0) out += line;
  fclose(f);
  return out;
}

// Injection must leave the thread's own SIGTRAP action alone (a trap raised while every
// signal is blocked, as an int3 after the call would be, resets it to SIG_DFL): a handler
// still runs for the child's own SIGTRAP afterwards, and SIG_IGN stays.
TEST(Ptrace, InjectionKeepsSigtrapHandlerAndIgnore) {
  for (bool ignore : {false, true}) {
    SCOPED_TRACE(ignore ? "SIG_IGN" : "handler");
    Pipe to_child, from_child;
    Child child([&] {
      signal(SIGTRAP, ignore ? SIG_IGN : on_trap);
      echo_once(to_child.r, from_child.w);
      raise(SIGTRAP);
      if (write(from_child.w, g_traps == 1 || ignore ? "T" : "x", 1) != 1) _exit(5);
    });
    ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");
    std::this_thread::sleep_for(50ms);
    const std::string before = signal_dispositions(child.pid());
    SeizedThread thread = SeizedThread::seize(child.pid());
    thread.interrupt_and_wait();
    {
      RemoteSyscall remote(thread, thread.get_regs().rip, true);
      EXPECT_EQ(remote.call(SYS_getpid), child.pid());
      EXPECT_EQ(remote.call(SYS_getppid), getpid());
    }
    thread.detach();
    EXPECT_EQ(signal_dispositions(child.pid()), before);
    write_str(to_child.w, "trap!");
    EXPECT_EQ(read_with_timeout(from_child.r, 6, 5s), "trap!T");
  }
}

TEST(Ptrace, ErrorsNameWhatFailed) {
  try {
    SeizedThread::seize(999999999);
    ADD_FAILURE() << "seize of a missing tid did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("999999999"), std::string::npos) << e.what();
  }
  Pipe to_child, from_child;
  Child child([&] { echo_once(to_child.r, from_child.w); });
  ASSERT_EQ(read_with_timeout(from_child.r, 1, 5s), "R");
  std::byte buf[16];
  try {
    read_memory(child.pid(), 0x1000, buf);
    ADD_FAILURE() << "read of unmapped memory did not throw";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(std::to_string(child.pid())), std::string::npos) << what;
    EXPECT_NE(what.find("0x1000"), std::string::npos) << what;
    EXPECT_NE(what.find("16 bytes"), std::string::npos) << what;
  }
  // wait_stop on a running thread times out with the tid in the message.
  SeizedThread thread = SeizedThread::seize(child.pid());
  try {
    thread.wait_stop(100ms);
    ADD_FAILURE() << "wait_stop did not time out";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(child.pid())), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace stasis::ptrace
