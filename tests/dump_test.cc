// stasis dump on real processes: --pid of forked workloads (threads, signals, files), refusals
// (sockets, trees, missing targets) that leave the job running and untraced, containers from
// `stasis run -d`, and page compression.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cgroup.pb.h"
#include "core.pb.h"
#include "dump/core.h"
#include "dump/memory.h"
#include "files.pb.h"
#include "images/checkpoint.h"
#include "images/image_file.h"
#include "images/page_file.h"
#include "launcher/config.h"
#include "launcher/state_store.h"
#include "mm.pb.h"
#include "pipe.pb.h"
#include "pstree.pb.h"
#include "regfile.pb.h"
#include "signals.pb.h"
#include "tests/launcher_test_util.h"
#include "tests/support/test_util.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;
using images::ImageType;
using namespace std::chrono_literals;

// A workload forked by the test with clean fds (0 = /dev/null, 1/2 = a log), killed and
// reaped by pid on destruction.
class Workload {
 public:
  // stdin_fd: what the workload gets as fd 0 (default /dev/null).
  Workload(const std::string& name, std::vector<std::string> args, const fs::path& log, int stdin_fd = -1) {
    pid_ = ::fork();
    if (pid_ == 0) {
      int null = stdin_fd >= 0 ? stdin_fd : ::open("/dev/null", O_RDONLY);
      int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(null, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::syscall(SYS_close_range, 3, ~0U, 0);
      ::setsid();
      std::string path = workload(name);
      std::vector<char*> argv{path.data()};
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(path.c_str(), argv.data());
      ::_exit(127);
    }
  }
  ~Workload() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // Waits (bounded) for it to exit; returns its wait status or -1.
  int wait_exit(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return status;
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

// "ok N" -> N; 0 when missing; -1 on "FAIL".
long long progress(const fs::path& status) {
  std::ifstream in(status);
  std::string word;
  long long n = 0;
  if (!(in >> word)) return 0;
  if (word != "ok") return -1;
  in >> n;
  return n;
}

bool advances(const fs::path& status) {
  long long before = progress(status);
  return wait_until([&] { return progress(status) > before; }, 5s);
}

std::string status_field(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) {
      std::string v = line.substr(key.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return "";
}

void expect_untouched(pid_t pid, const fs::path& status) {
  EXPECT_EQ(status_field(pid, "TracerPid"), "0");
  std::string state = status_field(pid, "State");
  EXPECT_FALSE(state.empty());
  EXPECT_NE(state[0], 't') << state;
  EXPECT_NE(state[0], 'T') << state;
  EXPECT_TRUE(advances(status)) << "the job does not progress after the failed dump";
}

template <typename M>
M single(const images::Checkpoint& ck, ImageType type, std::optional<int64_t> id = std::nullopt) {
  M m;
  images::read_single(ck.path(type, id), type, m);
  return m;
}

TEST(DumpUnit, SyscallRestartAdjustment) {
  user_regs_struct r{};
  r.orig_rax = SYS_read;
  r.rax = static_cast<unsigned long long>(-512L);
  r.rip = 0x1002;
  auto a = dump::adjust_for_restart(r);
  EXPECT_EQ(a.state, "syscall-restart");
  EXPECT_EQ(r.rip, 0x1000u);
  EXPECT_EQ(r.rax, static_cast<unsigned long long>(SYS_read));
  EXPECT_EQ(a.interrupted_syscall, SYS_read);

  r = {};
  r.orig_rax = SYS_clock_nanosleep;
  r.rax = static_cast<unsigned long long>(-516L);
  r.rip = 0x2002;
  a = dump::adjust_for_restart(r);
  EXPECT_EQ(a.state, "syscall-restart");
  EXPECT_EQ(r.rip, 0x2000u);
  EXPECT_EQ(r.rax, static_cast<unsigned long long>(SYS_clock_nanosleep));

  r = {};
  r.orig_rax = SYS_poll;  // its timeout starts over
  r.rax = static_cast<unsigned long long>(-516L);
  r.rip = 0x3002;
  a = dump::adjust_for_restart(r);
  EXPECT_EQ(a.state, "syscall-restart");
  EXPECT_EQ(r.rip, 0x3000u);
  EXPECT_EQ(r.rax, static_cast<unsigned long long>(SYS_poll));

  r = {};
  r.orig_rax = SYS_futex;  // a restart block of another call: EINTR
  r.rax = static_cast<unsigned long long>(-516L);
  r.rip = 0x3002;
  a = dump::adjust_for_restart(r);
  EXPECT_EQ(a.state, "syscall-eintr");
  EXPECT_EQ(r.rip, 0x3002u);
  EXPECT_EQ(static_cast<long>(r.rax), -EINTR);

  r = {};
  r.orig_rax = static_cast<unsigned long long>(-1L);
  r.rax = 5;
  a = dump::adjust_for_restart(r);
  EXPECT_EQ(a.state, "running");
  EXPECT_EQ(a.interrupted_syscall, -1);
}

TEST(DumpUnit, RestartedSleepIsRestartedAgain) {
  // A sleep interrupted twice: the second time it runs as restart_syscall, with the
  // clock_nanosleep arguments still in the registers.
  auto readable = [](uint64_t, timespec* out) {
    *out = timespec{1, 500};
    return true;
  };
  user_regs_struct r{};
  r.orig_rax = SYS_restart_syscall;
  r.rax = static_cast<unsigned long long>(-516L);
  r.rip = 0x4002;
  r.rdi = CLOCK_MONOTONIC;
  r.rsi = 0;
  r.rdx = 0x7ffc0000;
  auto a = dump::adjust_for_restart(r, readable);
  EXPECT_EQ(a.state, "syscall-restart");
  EXPECT_EQ(r.rip, 0x4000u);
  EXPECT_EQ(r.rax, static_cast<unsigned long long>(SYS_clock_nanosleep));
  EXPECT_EQ(a.interrupted_syscall, SYS_clock_nanosleep);

  // Arguments that are not a sleep's (poll(NULL, 0, 70000) restarted): EINTR, as before.
  auto unreadable = [](uint64_t, timespec*) { return false; };
  r = {};
  r.orig_rax = SYS_restart_syscall;
  r.rax = static_cast<unsigned long long>(-516L);
  r.rip = 0x5002;
  r.rdx = 70000;
  a = dump::adjust_for_restart(r, unreadable);
  EXPECT_EQ(a.state, "syscall-eintr");
  EXPECT_EQ(r.rip, 0x5002u);
  // And without a way to read memory, never guess.
  r.rax = static_cast<unsigned long long>(-516L);
  a = dump::adjust_for_restart(r);
  EXPECT_EQ(a.state, "syscall-eintr");
}

TEST(DumpUnit, VmaKinds) {
  EXPECT_EQ(dump::classify_vma("[heap]", false), pb::Vma::HEAP);
  EXPECT_EQ(dump::classify_vma("[stack]", false), pb::Vma::STACK);
  EXPECT_EQ(dump::classify_vma("[vvar_vclock]", false), pb::Vma::VVAR_VCLOCK);
  EXPECT_EQ(dump::classify_vma("/dev/zero (deleted)", true), pb::Vma::ANON_SHARED);
  EXPECT_EQ(dump::classify_vma("/SYSV00000000 (deleted)", true), pb::Vma::ANON_SHARED);
  EXPECT_EQ(dump::classify_vma("/usr/lib/libc.so.6", false), pb::Vma::FILE_PRIVATE);
  EXPECT_EQ(dump::classify_vma("/data/x", true), pb::Vma::FILE_SHARED);
  EXPECT_EQ(dump::classify_vma("", false), pb::Vma::ANON_PRIVATE);
  EXPECT_EQ(dump::classify_vma("[anon:glibc]", false), pb::Vma::ANON_PRIVATE);
}

TEST(Dump, PidOfThreadedProcessLeaveRunning) {
  TempDir tmp("dump-threads");
  fs::path status = tmp.path() / "status";
  Workload w("threads", {status.string()}, tmp.path() / "log");
  ASSERT_TRUE(wait_until([&] { return progress(status) > 0; }, 10s));
  fs::path dir = tmp.path() / "ck";
  auto r = run_stasis({"dump", "--pid", std::to_string(w.pid()), "-D", dir.string(), "--leave-running"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("freeze"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("frozen"), std::string::npos) << r.out;

  auto ck = images::Checkpoint::open(dir);
  ck.verify();
  EXPECT_EQ(ck.inventory().root_host_pid(), w.pid());
  EXPECT_EQ(ck.inventory().root_pid(), w.pid());  // same PID namespace as the test
  EXPECT_EQ(ck.inventory().compression(), "lz4");

  auto tasks = images::read_all<pb::TaskEntry>(ck.path(ImageType::Pstree), ImageType::Pstree);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].tids_size(), 9);  // main + 8 workers
  EXPECT_EQ(tasks[0].tids(0), w.pid());
  int64_t id = tasks[0].pid();

  auto core = single<pb::TaskCore>(ck, ImageType::Core, id);
  ASSERT_EQ(core.threads_size(), 9);
  for (const auto& t : core.threads()) {
    EXPECT_EQ(t.gpregs().size(), sizeof(user_regs_struct));
    EXPECT_GE(t.xstate().size(), 512u);
    EXPECT_NE(t.rseq().address(), 0u) << "glibc registers rseq for every thread";
    EXPECT_NE(t.clear_child_tid(), 0u);
    EXPECT_FALSE(t.syscall_state().empty());
  }
  EXPECT_EQ(core.comm(), "threads");
  EXPECT_EQ(core.rlimits_size(), 16);
  EXPECT_EQ(core.dumpable(), 1u);

  auto mm = single<pb::MmState>(ck, ImageType::Mm, id);
  std::map<int, int> kinds;
  for (const auto& v : mm.vmas()) kinds[v.kind()]++;
  EXPECT_GE(kinds[pb::Vma::FILE_PRIVATE], 2);
  EXPECT_EQ(kinds[pb::Vma::STACK], 1);
  EXPECT_EQ(kinds[pb::Vma::VDSO], 1);
  EXPECT_NE(mm.brk(), 0u);
  EXPECT_FALSE(mm.auxv().empty());
  EXPECT_EQ(fs::path(mm.exe_path()).filename(), "threads");

  images::PageReader pages(dir, id);
  EXPECT_FALSE(pages.entries().empty());
  uint64_t bytes = 0;
  pages.for_each([&](uint64_t, uint64_t len, std::span<const std::byte>, bool) { bytes += len; });
  EXPECT_GT(bytes, 8u * 4096) << "at least the workers' stacks";

  auto fds = images::read_all<pb::FdEntry>(ck.path(ImageType::Fds, id), ImageType::Fds);
  ASSERT_EQ(fds.size(), 3u);
  EXPECT_EQ(fds[0].kind(), pb::FdEntry::CHARDEV);
  EXPECT_EQ(fds[1].kind(), pb::FdEntry::REGULAR);
  EXPECT_EQ(fds[1].file_id(), fds[2].file_id()) << "dup'd stdout/stderr share one open file";

  // Nothing of the dump stays in the job: it runs on, untraced.
  expect_untouched(w.pid(), status);
}

TEST(Dump, SignalsFilesPipes) {
  TempDir tmp("dump-state");
  fs::path status = tmp.path() / "status";
  Workload w("dump_state", {status.string(), tmp.path().string()}, tmp.path() / "log");
  // A few iterations, so that the reader and poll threads sit in their calls.
  ASSERT_TRUE(wait_until([&] { return progress(status) > 5; }, 10s));
  fs::path dir = tmp.path() / "ck";
  auto r = run_stasis({"dump", "--pid", std::to_string(w.pid()), "-D", dir.string(), "--leave-running",
                       "--compress", "zstd"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ck = images::Checkpoint::open(dir);
  int64_t id = ck.inventory().root_pid();

  auto sig = single<pb::SignalState>(ck, ImageType::Signals, id);
  bool usr1 = false, pipe_ign = false;
  for (const auto& a : sig.actions()) {
    if (a.signo() == SIGUSR1) {
      usr1 = true;
      EXPECT_GT(a.handler(), 1u);
      EXPECT_TRUE(a.flags() & SA_RESTART);
      EXPECT_TRUE(a.mask() & (1ull << (SIGUSR2 - 1)));
    }
    if (a.signo() == SIGPIPE) {
      pipe_ign = true;
      EXPECT_EQ(a.handler(), 1u);
    }
  }
  EXPECT_TRUE(usr1);
  EXPECT_TRUE(pipe_ign);
  ASSERT_EQ(sig.threads_size(), 4);
  EXPECT_EQ(sig.threads(0).altstack_size(), 65536u);
  EXPECT_EQ(sig.threads(1).altstack_flags(), SS_DISABLE);

  // Threads 2 and 3 are blocked in read() and poll(): both stored ready to restart (poll's
  // timeout starts over).
  auto core = single<pb::TaskCore>(ck, ImageType::Core, id);
  ASSERT_EQ(core.threads_size(), 4);
  std::map<int64_t, std::string> states;
  for (const auto& t : core.threads()) states[t.interrupted_syscall()] = t.syscall_state();
  EXPECT_EQ(states[SYS_read], "syscall-restart");
  EXPECT_EQ(states[SYS_poll], "syscall-restart");
  for (const auto& t : core.threads()) {
    user_regs_struct regs;
    ASSERT_EQ(t.gpregs().size(), sizeof regs);
    std::memcpy(&regs, t.gpregs().data(), sizeof regs);
    if (t.interrupted_syscall() == SYS_read) {
      EXPECT_EQ(regs.rax, static_cast<unsigned long long>(SYS_read));
    }
    if (t.interrupted_syscall() == SYS_poll) {
      EXPECT_EQ(regs.rax, static_cast<unsigned long long>(SYS_poll));
    }
  }
  bool real = false;
  for (const auto& it : sig.itimers())
    if (it.which() == ITIMER_REAL) {
      real = true;
      EXPECT_EQ(it.interval_us(), 100000000u);
      EXPECT_GT(it.value_us(), 90000000u);
    }
  EXPECT_TRUE(real);

  auto fds = images::read_all<pb::FdEntry>(ck.path(ImageType::Fds, id), ImageType::Fds);
  std::map<int, pb::FdEntry> by_fd;
  for (auto& e : fds) by_fd[e.fd()] = e;
  ASSERT_TRUE(by_fd.count(20) && by_fd.count(21) && by_fd.count(22) && by_fd.count(23));
  EXPECT_EQ(by_fd[20].kind(), pb::FdEntry::PIPE);
  EXPECT_EQ(by_fd[23].kind(), pb::FdEntry::CHARDEV);

  auto pipes = images::read_all<pb::PipeEnd>(ck.path(ImageType::Pipes), ImageType::Pipes);
  ASSERT_EQ(pipes.size(), 4u) << "two pipes, read and write ends (fd 20 is a dup of a write end)";
  std::map<uint64_t, int> ends;
  for (const auto& p : pipes) {
    ends[p.pipe_id()]++;
    EXPECT_GE(p.capacity(), 4096u);
  }
  EXPECT_EQ(ends.size(), 2u);
  auto data = images::read_all<pb::PipeData>(ck.path(ImageType::PipeData), ImageType::PipeData);
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0].data(), "hello pipe");

  auto files = images::read_all<pb::RegFile>(ck.path(ImageType::RegFiles), ImageType::RegFiles);
  std::map<uint64_t, pb::RegFile> by_id;
  for (auto& f : files) by_id[f.id()] = f;
  const auto& regular = by_id[by_fd[21].file_id()];
  EXPECT_EQ(regular.path(), (tmp.path() / "regular").string());
  EXPECT_EQ(regular.pos(), 5u);
  EXPECT_EQ(regular.flags() & O_ACCMODE, static_cast<uint32_t>(O_RDWR));
  EXPECT_FALSE(regular.deleted());
  const auto& deleted = by_id[by_fd[22].file_id()];
  EXPECT_TRUE(deleted.deleted());
  EXPECT_EQ(deleted.path(), (tmp.path() / "deleted").string());
  ASSERT_EQ(deleted.extents_size(), 1);  // its data, by data extents
  EXPECT_EQ(deleted.extents(0).offset(), 0u);
  EXPECT_EQ(deleted.extents(0).data(), "gone but kept");

  // Memory: the pattern is saved exactly; of the private file mapping only the modified page.
  uint64_t pattern = 0, mapped = 0;
  {
    std::string log = slurp(tmp.path() / "log");
    ASSERT_EQ(std::sscanf(log.c_str(), "pattern %lx mapped %lx", &pattern, &mapped), 2) << log;
  }
  auto mm = single<pb::MmState>(ck, ImageType::Mm, id);
  const pb::Vma* file_vma = nullptr;
  for (const auto& v : mm.vmas())
    if (v.start() == mapped) file_vma = &v;
  ASSERT_NE(file_vma, nullptr);
  EXPECT_EQ(file_vma->kind(), pb::Vma::FILE_PRIVATE);
  EXPECT_EQ(file_vma->path(), (tmp.path() / "mapped").string());
  EXPECT_EQ(file_vma->file().size(), 8192u);
  EXPECT_TRUE(file_vma->dumped());
  images::PageReader pages(dir, id);
  auto bytes = pages.read_range(pattern, 4 << 20);
  ASSERT_EQ(bytes.size(), 4u << 20);
  size_t bad = 0;
  for (size_t i = 0; i < bytes.size(); ++i)
    if (bytes[i] != static_cast<std::byte>(static_cast<unsigned char>(i * 7 + 3))) ++bad;
  EXPECT_EQ(bad, 0u);
  auto first = pages.read_range(mapped, 4096);
  ASSERT_EQ(first.size(), 4096u);
  EXPECT_EQ(first[0], std::byte{'X'});
  bool second_saved = false;
  pages.for_each([&](uint64_t vaddr, uint64_t len, std::span<const std::byte>, bool) {
    if (vaddr <= mapped + 4096 && mapped + 4096 < vaddr + len) second_saved = true;
  });
  EXPECT_FALSE(second_saved) << "an unmodified page of a private file mapping comes from the file";

  // The pipe still holds its bytes: dumping read them without consuming them.
  expect_untouched(w.pid(), status);
  auto again = run_stasis({"dump", "--pid", std::to_string(w.pid()), "-D", (tmp.path() / "ck2").string(),
                           "--leave-running"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  auto ck2 = images::Checkpoint::open(tmp.path() / "ck2");
  auto data2 = images::read_all<pb::PipeData>(ck2.path(ImageType::PipeData), ImageType::PipeData);
  ASSERT_EQ(data2.size(), 1u);
  EXPECT_EQ(data2[0].data(), "hello pipe");
}

// Dumps the workload by pid and expects a refusal (exit 4) naming its fd 3 and `what`; the
// partial checkpoint is gone and the job runs on untouched.
void expect_fd_refused(const std::string& workload, const std::vector<std::string>& args, const std::string& what) {
  TempDir tmp("dump-refused");
  fs::path status = tmp.path() / "status";
  std::vector<std::string> argv{status.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  Workload w(workload, argv, tmp.path() / "log");
  ASSERT_TRUE(wait_until([&] { return progress(status) > 0; }, 10s));
  fs::path dir = tmp.path() / "ck";
  auto r = run_stasis({"dump", "--pid", std::to_string(w.pid()), "-D", dir.string()});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find(fmt::format("pid {} fd 3", w.pid())), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir)) << "the partial checkpoint must be removed";
  expect_untouched(w.pid(), status);
}

TEST(Dump, SocketIsRefusedAndJobRunsOn) {
  expect_fd_refused("dump_socket", {}, "packet socket (AF_PACKET) is not supported");
}

TEST(Dump, LeaseIsRefusedAndJobRunsOn) { expect_fd_refused("dump_lease", {}, "LEASE locks are not supported"); }

TEST(Dump, SysvSharedMemoryIsRefusedAndJobRunsOn) {
  TempDir tmp("dump-sysv");
  fs::path status = tmp.path() / "status";
  Workload w("dump_sysv", {status.string()}, tmp.path() / "log");
  ASSERT_TRUE(wait_until([&] { return progress(status) > 0; }, 10s));
  fs::path dir = tmp.path() / "ck";
  auto r = run_stasis({"dump", "--pid", std::to_string(w.pid()), "-D", dir.string()});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("SysV shared memory"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir));
  expect_untouched(w.pid(), status);
}

// A pipe whose writer is outside the job (the test) is dumped, marked as such, the job's
// end named in the output (checkpoint_pipes_test restores such pipes).
TEST(Dump, PipeToOutsideIsDumpedAndMarked) {
  TempDir tmp("dump-pipe");
  fs::path status = tmp.path() / "status";
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Workload w("counter", {status.string()}, tmp.path() / "log", p[0]);
  ::close(p[0]);
  ASSERT_TRUE(wait_until([&] { return progress(status) > 0; }, 10s));
  fs::path dir = tmp.path() / "ck";
  auto r = run_stasis({"dump", "--pid", std::to_string(w.pid()), "-D", dir.string(), "--leave-running"});
  ::close(p[1]);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find(fmt::format("pid {} fd 0: the other end of pipe:[", w.pid())), std::string::npos) << r.err;
  auto show = run_stasis({"show", dir.string()});
  EXPECT_NE(show.out.find("\"other_end_outside\": true"), std::string::npos) << show.out;
}

// A process and its child: `dump --pid` takes the whole subtree, parent first, the child
// with its parent's pid (checkpoint_tree_test restores trees).
TEST(Dump, ProcessTreeIsDumpedWhole) {
  TempDir tmp("dump-tree");
  fs::path status = tmp.path() / "status";
  Workload w("dump_tree", {status.string()}, tmp.path() / "log");
  ASSERT_TRUE(wait_until([&] { return progress(status) > 0; }, 10s));
  fs::path dir = tmp.path() / "ck";
  auto r = run_stasis({"dump", "--pid", std::to_string(w.pid()), "-D", dir.string(), "--leave-running"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("2 processes"), std::string::npos) << r.out;
  auto ck = images::Checkpoint::open(dir);
  ck.verify();
  auto tasks = images::read_all<pb::TaskEntry>(ck.path(ImageType::Pstree), ImageType::Pstree);
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].pid(), w.pid());
  EXPECT_EQ(tasks[0].ppid(), 0);
  EXPECT_EQ(tasks[1].ppid(), w.pid());
  EXPECT_TRUE(ck.exists(ImageType::Core, tasks[1].pid()));
  expect_untouched(w.pid(), status);
}

TEST(Dump, StoppedProcessStaysStopped) {
  TempDir tmp("dump-stopped");
  fs::path status = tmp.path() / "status";
  Workload w("counter", {status.string()}, tmp.path() / "log");
  ASSERT_TRUE(wait_until([&] { return progress(status) > 0; }, 10s));
  ::kill(w.pid(), SIGSTOP);
  ASSERT_TRUE(wait_until([&] { return status_field(w.pid(), "State").rfind("T", 0) == 0; }, 5s));
  auto r = run_stasis({"dump", "--pid", std::to_string(w.pid()), "-D", (tmp.path() / "ck").string(),
                       "--leave-running"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(status_field(w.pid(), "TracerPid"), "0");
  // The detach wakes the thread, which then goes back into its group stop by itself: give it
  // a moment (under load it can still show R or t right after the dump returns).
  EXPECT_TRUE(wait_until([&] { return status_field(w.pid(), "State").rfind("T", 0) == 0; }, 2s))
      << "a job stopped by SIGSTOP stays stopped; State: " << status_field(w.pid(), "State");
  ::kill(w.pid(), SIGCONT);
  EXPECT_TRUE(advances(status));
}

TEST(Dump, MissingTargetsAreClearErrors) {
  TempDir tmp("dump-missing");
  auto r = run_stasis({"dump", "--pid", "999999999", "-D", (tmp.path() / "ck").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no process with pid 999999999"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp.path() / "ck"));

  TempDir root("dump-root");
  r = run_stasis({"--root", root.path().string(), "dump", "no-such-container", "-D", (tmp.path() / "ck").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no-such-container"), std::string::npos) << r.err;

  r = run_stasis({"dump", "-D", (tmp.path() / "ck").string()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run_stasis({"dump", "--pid", "1", "-D", (tmp.path() / "ck").string(), "--compress", "gzip"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

TEST(Dump, PidIsKilledByDefault) {
  TempDir tmp("dump-kill");
  fs::path status = tmp.path() / "status";
  Workload w("counter", {status.string()}, tmp.path() / "log");
  ASSERT_TRUE(wait_until([&] { return fs::exists(status); }, 10s));
  auto r = run_stasis({"dump", "--pid", std::to_string(w.pid()), "-D", (tmp.path() / "ck").string(),
                       "--compress", "none"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("killed"), std::string::npos) << r.out;
  int st = w.wait_exit(10s);
  ASSERT_NE(st, -1) << "the job must be gone after the dump";
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  images::Checkpoint::open(tmp.path() / "ck").verify();
}

TEST(Dump, MemoryContentsAllCompressions) {
  TempDir tmp("dump-mem");
  fs::path status = tmp.path() / "status";
  Workload w("bigmem", {status.string(), "32"}, tmp.path() / "log");
  ASSERT_TRUE(wait_until([&] { return progress(status) > 0; }, 20s));
  for (const char* c : {"none", "lz4", "zstd"}) {
    fs::path dir = tmp.path() / (std::string("ck-") + c);
    auto r = run_stasis({"dump", "--pid", std::to_string(w.pid()), "-D", dir.string(), "--leave-running",
                         "--compress", c});
    ASSERT_EQ(r.exit_code, 0) << c << ": " << r.err;
    auto ck = images::Checkpoint::open(dir);
    ck.verify();
    EXPECT_EQ(ck.inventory().compression(), c);
    images::PageReader pages(dir, ck.inventory().root_pid());
    uint64_t bytes = 0;
    pages.for_each([&](uint64_t, uint64_t len, std::span<const std::byte>, bool) { bytes += len; });
    EXPECT_GE(bytes, 32u << 20) << c;
  }
  expect_untouched(w.pid(), status);
}

// A tmpfs of its own for one test, unmounted (lazily, whatever is left in it) at the end.
class SmallTmpfs {
 public:
  SmallTmpfs(const fs::path& at, const std::string& size) : path_(at) {
    fs::create_directories(at);
    mounted_ = ::mount("tmpfs", at.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  fs::path path_;
  bool mounted_ = false;
};

TEST(Dump, FullImageFolderFailsAndJobRunsOn) {
  // The page file is written on a thread of its own: its error must still fail the dump,
  // name the file, remove the partial checkpoint and leave the job running.
  TempDir tmp("dump-full");
  fs::path status = tmp.path() / "status";
  Workload w("bigmem", {status.string(), "64"}, tmp.path() / "log");
  ASSERT_TRUE(wait_until([&] { return progress(status) > 0; }, 30s));
  SmallTmpfs small(tmp.path() / "small", "16m");
  ASSERT_TRUE(small.mounted()) << "mount tmpfs: " << std::strerror(errno);
  for (const char* compression : {"none", "lz4"}) {
    SCOPED_TRACE(compression);
    fs::path dir = tmp.path() / "small" / "ck";
    auto r = run_stasis({"dump", "--pid", std::to_string(w.pid()), "-D", dir.string(), "--compress", compression});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("pages-"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir));
    expect_untouched(w.pid(), status);
  }
}

TEST(Dump, InterruptedDumpLeavesJobRunning) {
  TempDir tmp("dump-int");
  fs::path status = tmp.path() / "status";
  Workload w("bigmem", {status.string(), "256"}, tmp.path() / "log");
  ASSERT_TRUE(wait_until([&] { return progress(status) > 0; }, 30s));
  fs::path dir = tmp.path() / "ck";
  fs::path out = tmp.path() / "dump.err";
  // stasis dump in the background, so that it can be interrupted mid-way.
  pid_t dumper = ::fork();
  if (dumper == 0) {
    int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 2);
    ::dup2(fd, 1);
    std::string bin = stasis_binary(), pid = std::to_string(w.pid());
    ::execl(bin.c_str(), bin.c_str(), "dump", "--pid", pid.c_str(), "-D", dir.c_str(), "--compress", "zstd",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait until it has the job stopped (the checkpoint directory exists), then interrupt it.
  wait_until([&] { return fs::exists(dir / "pstree.img") || fs::exists(dir); }, 10s);
  std::this_thread::sleep_for(50ms);
  ::kill(dumper, SIGINT);
  int st = 0;
  ASSERT_EQ(::waitpid(dumper, &st, 0), dumper);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) GTEST_SKIP() << "the dump finished before the interrupt";
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << slurp(out);
  EXPECT_NE(slurp(out).find("interrupted"), std::string::npos) << slurp(out);
  EXPECT_FALSE(fs::exists(dir));
  expect_untouched(w.pid(), status);
}

// --- containers (stasis run -d)

struct Container {
  TempDir root{"dump-ct-root"};
  std::string name = unique_name("dump");
  std::optional<ContainerGuard> guard;
};

pb::ContainerState load_state(const Container& c) { return launcher::StateStore(c.root.path()).load(c.name); }

void start_counter(Container& c, const fs::path& status) {
  c.guard.emplace(c.root.path(), c.name);
  auto r = stasis_at(c.root, {"run", "-d", "--name", c.name, "--", workload("counter"), status.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(wait_until([&] { return fs::exists(status); }, 10s));
}

TEST(DumpContainer, LeaveRunning) {
  TempDir tmp("dump-ct");
  fs::path status = tmp.path() / "status";
  Container c;
  start_counter(c, status);
  fs::path dir = tmp.path() / "ck";
  auto r = stasis_at(c.root, {"dump", c.name, "-D", dir.string(), "--leave-running"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ck = images::Checkpoint::open(dir);
  ck.verify();
  EXPECT_EQ(ck.inventory().container_name(), c.name);
  EXPECT_EQ(ck.inventory().root_pid(), 1) << "PID 1 of its own PID namespace";
  auto fds = images::read_all<pb::FdEntry>(ck.path(ImageType::Fds, 1), ImageType::Fds);
  ASSERT_GE(fds.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(fds[i].kind(), pb::FdEntry::INHERITED) << "fd " << i;
    EXPECT_EQ(fds[i].file_id(), static_cast<uint64_t>(i));
  }
  auto config = single<pb::ContainerConfig>(ck, ImageType::Container);
  EXPECT_EQ(config.name(), c.name);
  auto state = load_state(c);
  EXPECT_EQ(state.status(), "running");
  expect_untouched(state.init_pid(), status);
}

TEST(DumpContainer, KilledAndRemovedByDefault) {
  TempDir tmp("dump-ct");
  fs::path status = tmp.path() / "status";
  Container c;
  c.guard.emplace(c.root.path(), c.name);
  auto run = stasis_at(c.root, {"run", "-d", "--name", c.name, "--memory", "64M", "--pids", "50", "--cpus", "0.5",
                                "--", workload("counter"), status.string()});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ASSERT_TRUE(wait_until([&] { return fs::exists(status); }, 10s));
  pid_t init = load_state(c).init_pid();
  fs::path dir = tmp.path() / "ck";
  auto r = stasis_at(c.root, {"dump", c.name, "-D", dir.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ck = images::Checkpoint::open(dir);
  ck.verify();
  auto cg = single<pb::CgroupState>(ck, ImageType::Cgroup);
  EXPECT_EQ(cg.memory_max(), 64 << 20);
  EXPECT_EQ(cg.pids_max(), 50);
  EXPECT_EQ(cg.cpu_quota_us() * 2, cg.cpu_period_us());
  EXPECT_FALSE(launcher::StateStore(c.root.path()).try_load(c.name).has_value()) << "the name must be free";
  EXPECT_TRUE(wait_until([&] { return !fs::exists("/proc/" + std::to_string(init)); }, 10s));
  EXPECT_TRUE(leftover_cgroups(c.name).empty());
}

TEST(DumpContainer, CgroupV2Freezer) {
  TempDir tmp("dump-ct");
  fs::path status = tmp.path() / "status";
  Container c;
  c.guard.emplace(c.root.path(), c.name);
  auto run = stasis_at(c.root, {"run", "-d", "--cgroup-driver", "v2", "--name", c.name, "--", workload("threads"),
                                status.string()});
  if (run.exit_code != 0) GTEST_SKIP() << "no cgroup v2 here: " << run.err;
  ASSERT_TRUE(wait_until([&] { return progress(status) > 0; }, 10s));
  fs::path dir = tmp.path() / "ck";
  auto r = stasis_at(c.root, {"dump", c.name, "-D", dir.string(), "--leave-running"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ck = images::Checkpoint::open(dir);
  auto cg = single<pb::CgroupState>(ck, ImageType::Cgroup);
  EXPECT_EQ(cg.driver(), "v2");
  EXPECT_EQ(cg.path(), (fs::path("/") / launcher::cgroup_parent_for(c.root.path()) / c.name).string());
  auto tasks = images::read_all<pb::TaskEntry>(ck.path(ImageType::Pstree), ImageType::Pstree);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].tids_size(), 9);
  auto state = load_state(c);
  EXPECT_NE(slurp(fs::path(state.cgroup_paths().at("unified")) / "cgroup.events").find("frozen 0"), std::string::npos);
  expect_untouched(state.init_pid(), status);
}

TEST(DumpContainer, RefusalLeavesContainerRunningAndThawed) {
  TempDir tmp("dump-ct");
  fs::path status = tmp.path() / "status";
  Container c;
  c.guard.emplace(c.root.path(), c.name);
  auto run = stasis_at(c.root, {"run", "-d", "--name", c.name, "--", workload("dump_socket"), status.string()});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ASSERT_TRUE(wait_until([&] { return progress(status) > 0; }, 10s));
  auto state = load_state(c);
  fs::path dir = tmp.path() / "ck";
  auto r = stasis_at(c.root, {"dump", c.name, "-D", dir.string()});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("fd 3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("socket"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_EQ(load_state(c).status(), "running");
  auto freezer = state.cgroup_paths().find("freezer");
  if (freezer != state.cgroup_paths().end()) {
    EXPECT_EQ(slurp(fs::path(freezer->second) / "freezer.state"), "THAWED\n");
  }
  auto unified = state.cgroup_paths().find("unified");
  if (unified != state.cgroup_paths().end()) {
    EXPECT_NE(slurp(fs::path(unified->second) / "cgroup.events").find("frozen 0"), std::string::npos);
  }
  expect_untouched(state.init_pid(), status);
}

TEST(DumpContainer, InitReaperIsNotDumpedAndTreeIsKilled) {
  TempDir tmp("dump-ct");
  fs::path status = tmp.path() / "status";
  Container c;
  c.guard.emplace(c.root.path(), c.name);
  auto run = stasis_at(c.root, {"run", "-d", "--init", "--name", c.name, "--", workload("threads"), status.string()});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ASSERT_TRUE(wait_until([&] { return progress(status) > 0; }, 10s));
  pid_t init = load_state(c).init_pid();
  fs::path dir = tmp.path() / "ck";
  auto r = stasis_at(c.root, {"dump", c.name, "-D", dir.string()}, 30s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ck = images::Checkpoint::open(dir);
  ck.verify();
  auto tasks = images::read_all<pb::TaskEntry>(ck.path(ImageType::Pstree), ImageType::Pstree);
  ASSERT_EQ(tasks.size(), 1u) << "our reaper (PID 1) is not part of the job";
  EXPECT_EQ(tasks[0].pid(), 2);
  EXPECT_EQ(tasks[0].tids_size(), 9);
  EXPECT_EQ(ck.inventory().root_pid(), 2);
  EXPECT_FALSE(launcher::StateStore(c.root.path()).try_load(c.name).has_value());
  EXPECT_TRUE(wait_until([&] { return !fs::exists("/proc/" + std::to_string(init)); }, 10s));
}

}  // namespace
}  // namespace stasis::test
