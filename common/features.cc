// Kernel feature probes (see features.h and docs/kernel.md). Probes that change process
// state (namespaces, clone3, userfaultfd, prctl) run in a forked child that reports back
// through a pipe; the parent bounds the wait and kills and reaps the child by pid.
#include "common/features.h"

#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include "common/compat.h"
#include "common/error.h"
#include "common/fd.h"
#include "common/json.h"
#include "common/file_util.h"
#include "common/proc.h"
#include "common/ptrace.h"

namespace stasis::features {

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kProbeTimeout = 5s;

std::string errno_text(std::string_view what) { return fmt::format("{}: {}", what, describe_errno(errno)); }

// Runs fn in a forked child. fn returns "" on success or what went wrong. The child's answer
// comes back through a pipe; the wait is bounded, and the child is killed and reaped by pid.
std::string in_child(const std::function<std::string()>& fn) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) return errno_text("pipe");
  UniqueFd rd(fds[0]), wr(fds[1]);
  pid_t pid = ::fork();
  if (pid < 0) return errno_text("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a probe never outlives stasis
    rd.reset();
    std::string result;
    try {
      result = fn();
    } catch (const std::exception& e) {
      result = e.what();
    }
    if (!result.empty()) {
      ssize_t n = ::write(wr.get(), result.data(), result.size());
      (void)n;
    }
    ::_exit(result.empty() ? 0 : 1);
  }
  wr.reset();
  std::string message;
  bool timed_out = false;
  const auto deadline = Clock::now() + kProbeTimeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{rd.get(), POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[512];
    ssize_t r = ::read(rd.get(), buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;  // EOF: the child is done
    message.append(buf, static_cast<size_t>(r));
  }
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return fmt::format("probe did not finish within {} s", kProbeTimeout.count());
  if (WIFSIGNALED(status)) return fmt::format("probe child killed by signal {}", WTERMSIG(status));
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && message.empty())
    return fmt::format("probe child exited with {}", WEXITSTATUS(status));
  return message;
}

// A child that sleeps until killed; killed and reaped by pid on destruction.
class SleepingChild {
 public:
  SleepingChild() {
    pid_ = ::fork();
    if (pid_ < 0) fail_errno(errno, "fork");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      for (;;) ::pause();
    }
  }
  ~SleepingChild() {
    ::kill(pid_, SIGKILL);
    int status;
    while (::waitpid(pid_, &status, __WALL) < 0 && errno == EINTR) {
    }
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// ---------------------------------------------------------------------------------------
// The probes. Each returns "" when the feature works, else what failed.

std::string probe_namespace(int flag, const char* name) {
  return in_child([flag, name]() -> std::string {
    if (::unshare(flag) < 0) return errno_text(fmt::format("unshare(CLONE_NEW{})", name));
    return "";
  });
}

// First task of a new PID namespace created as PID 1 with set_tid, and inside it a child
// with a chosen PID: exactly what restore does to give tasks back their PIDs.
std::string probe_clone3_set_tid() {
  return in_child([]() -> std::string {
    if (::unshare(CLONE_NEWPID) < 0) return errno_text("unshare(CLONE_NEWPID)");
    pid_t outer_tid[1] = {1};
    struct clone_args args{};
    args.exit_signal = SIGCHLD;
    args.set_tid = reinterpret_cast<uint64_t>(outer_tid);
    args.set_tid_size = 1;
    long pid = compat::sys_clone3(&args, sizeof args);
    if (pid < 0) return errno_text("clone3 with set_tid {1} into a new PID namespace");
    if (pid == 0) {
      if (::getpid() != 1) ::_exit(10);
      pid_t inner_tid[1] = {4242};
      struct clone_args inner{};
      inner.exit_signal = SIGCHLD;
      inner.set_tid = reinterpret_cast<uint64_t>(inner_tid);
      inner.set_tid_size = 1;
      long child = compat::sys_clone3(&inner, sizeof inner);
      if (child < 0) ::_exit(11);
      if (child == 0) ::_exit(::getpid() == 4242 ? 0 : 12);
      int status = 0;
      if (::waitpid(static_cast<pid_t>(child), &status, 0) < 0) ::_exit(13);
      ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 14);
    }
    int status = 0;
    if (::waitpid(static_cast<pid_t>(pid), &status, 0) < 0) return errno_text("waitpid");
    if (!WIFEXITED(status)) return "clone3 child died by a signal";
    switch (WEXITSTATUS(status)) {
      case 0: return "";
      case 10: return "first task of the new PID namespace is not PID 1";
      case 11: return "clone3 with set_tid {4242} inside the new PID namespace failed";
      case 12: return "task created with set_tid {4242} got another PID";
      default: return fmt::format("clone3 probe failed (code {})", WEXITSTATUS(status));
    }
  });
}

// Seize, interrupt, registers, XSAVE area, rseq, one injected syscall, detach.
std::string probe_ptrace() {
  SleepingChild child;
  ptrace::SeizedThread thread = ptrace::SeizedThread::seize(child.pid(), PTRACE_O_EXITKILL);
  thread.interrupt_and_wait();
  user_regs_struct regs = thread.get_regs();
  std::vector<std::byte> xstate = thread.get_xstate();
  if (xstate.size() < 576) return fmt::format("NT_X86_XSTATE gave only {} bytes", xstate.size());
  {
    ptrace::RemoteSyscall remote(thread, regs.rip, true);
    long rc = remote.call(SYS_getpid);
    if (rc != child.pid()) return fmt::format("injected getpid returned {}, expected {}", rc, child.pid());
  }
  thread.detach();
  return "";
}

std::string probe_rseq_config() {
  SleepingChild child;
  ptrace::SeizedThread thread = ptrace::SeizedThread::seize(child.pid(), PTRACE_O_EXITKILL);
  thread.interrupt_and_wait();
  ptrace::RseqConfiguration rseq = thread.get_rseq();
  thread.detach();
  if (rseq.address == 0) return "";  // works; this libc just registers no rseq area
  if (rseq.length == 0) return "rseq registered with length 0";
  return "";
}

std::string probe_process_vm() {
  SleepingChild child;
  static volatile uint64_t marker = 0x5eed5eed5eed5eedULL;  // same address in the fork
  uint64_t value = 0;
  iovec local{&value, sizeof value};
  iovec remote{const_cast<uint64_t*>(&marker), sizeof value};
  if (::process_vm_readv(child.pid(), &local, 1, &remote, 1, 0) != sizeof value) return errno_text("process_vm_readv");
  if (value != marker) return "process_vm_readv read the wrong bytes";
  uint64_t other = 7;
  iovec out{&other, sizeof other};
  if (::process_vm_writev(child.pid(), &out, 1, &remote, 1, 0) != sizeof other) return errno_text("process_vm_writev");
  return "";
}

// Reading the setting is harmless; only ON changes how this process creates timers.
std::string probe_timer_restore_ids() {
  if (::prctl(PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_GET, 0, 0, 0) < 0)
    return errno_text("prctl(PR_TIMER_CREATE_RESTORE_IDS)");
  return "";
}

struct Mapping {
  void* addr = MAP_FAILED;
  size_t size = 0;
  Mapping(size_t s, int prot) : size(s) { addr = ::mmap(nullptr, s, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); }
  ~Mapping() {
    if (addr != MAP_FAILED) ::munmap(addr, size);
  }
  char* bytes() const { return static_cast<char*>(addr); }
  uint64_t start() const { return reinterpret_cast<uint64_t>(addr); }
};

// A PAGEMAP_SCAN request over the first `length` bytes of m, reporting pages of `category`
// into regions (8 of them).
pm_scan_arg scan_arg(const Mapping& m, size_t length, page_region (&regions)[8], uint64_t category) {
  pm_scan_arg arg{};
  arg.size = sizeof arg;
  arg.start = m.start();
  arg.end = m.start() + length;
  arg.vec = reinterpret_cast<uint64_t>(regions);
  arg.vec_len = 8;
  arg.category_mask = category;
  arg.return_mask = category;
  return arg;
}

std::string probe_pagemap_scan() {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  Mapping m(4 * page, PROT_READ | PROT_WRITE);
  if (m.addr == MAP_FAILED) return errno_text("mmap");
  m.bytes()[0] = 1;
  m.bytes()[2 * page] = 1;
  int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_text("open /proc/self/pagemap");
  UniqueFd pagemap(fd);
  page_region regions[8];
  pm_scan_arg arg = scan_arg(m, 4 * page, regions, PAGE_IS_PRESENT);
  int n = ::ioctl(pagemap.get(), PAGEMAP_SCAN, &arg);
  if (n < 0) return errno_text("ioctl PAGEMAP_SCAN");
  if (n != 2 || regions[0].start != m.start() || regions[1].start != m.start() + 2 * page)
    return fmt::format("PAGEMAP_SCAN found {} present runs, expected pages 0 and 2", n);
  return "";
}

UniqueFd open_userfaultfd(std::string& error) {
  int fd = compat::sys_userfaultfd(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
  if (fd >= 0) return UniqueFd(fd);
  std::string syscall_error = errno_text("userfaultfd()");
  int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev < 0) {
    error = syscall_error + "; " + errno_text("open /dev/userfaultfd");
    return UniqueFd();
  }
  UniqueFd devfd(dev);
  fd = ::ioctl(devfd.get(), USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) error = syscall_error + "; " + errno_text("ioctl USERFAULTFD_IOC_NEW");
  return UniqueFd(fd);
}

// The pre-copy dirty tracking path: userfaultfd async write-protect + PAGEMAP_SCAN reading
// and re-protecting written pages.
std::string probe_uffd_wp_async() {
  return in_child([]() -> std::string {
    std::string error;
    UniqueFd uffd = open_userfaultfd(error);
    if (!uffd) return error;
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
    if (::ioctl(uffd.get(), UFFDIO_API, &api) < 0) return errno_text("UFFDIO_API with WP_ASYNC|WP_UNPOPULATED");
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    Mapping m(4 * page, PROT_READ | PROT_WRITE);
    if (m.addr == MAP_FAILED) return errno_text("mmap");
    for (int i = 0; i < 4; ++i) m.bytes()[static_cast<size_t>(i) * page] = 1;
    uffdio_register reg{};
    reg.range.start = m.start();
    reg.range.len = 4 * page;
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    if (::ioctl(uffd.get(), UFFDIO_REGISTER, &reg) < 0) return errno_text("UFFDIO_REGISTER (WP)");
    int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_text("open /proc/self/pagemap");
    UniqueFd pagemap(fd);
    page_region regions[8];
    pm_scan_arg arg = scan_arg(m, 4 * page, regions, PAGE_IS_WRITTEN);
    arg.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
    if (::ioctl(pagemap.get(), PAGEMAP_SCAN, &arg) < 0) return errno_text("PAGEMAP_SCAN with PM_SCAN_WP_MATCHING");
    m.bytes()[page] = 2;  // dirty exactly one page
    arg.flags = 0;
    int n = ::ioctl(pagemap.get(), PAGEMAP_SCAN, &arg);
    if (n < 0) return errno_text("PAGEMAP_SCAN");
    if (n != 1 || regions[0].start != m.start() + page || regions[0].end != m.start() + 2 * page)
      return fmt::format("after write-protecting and writing page 1, PAGEMAP_SCAN found {} written runs", n);
    return "";
  });
}

// What dump --pre-dump and --parent do (dump/dirty_tracking.h): a userfaultfd made by another
// process (the job), taken with pidfd_getfd, put in write-protect async mode and registered on
// that process's memory; PAGEMAP_SCAN of /proc/PID/pagemap write-protects its pages, the
// process writes one page, and a second scan finds exactly that page written.
std::string probe_dirty_tracking() {
  return in_child([]() -> std::string {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    Mapping m(4 * page, PROT_READ | PROT_WRITE);
    if (m.addr == MAP_FAILED) return errno_text("mmap");
    for (int i = 0; i < 4; ++i) m.bytes()[static_cast<size_t>(i) * page] = 1;
    int to_job[2], from_job[2];
    if (::pipe2(to_job, O_CLOEXEC) < 0 || ::pipe2(from_job, O_CLOEXEC) < 0) return errno_text("pipe");
    pid_t job = ::fork();
    if (job < 0) return errno_text("fork");
    if (job == 0) {
      int fd = compat::sys_userfaultfd(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
      if (::write(from_job[1], &fd, sizeof fd) != sizeof fd) ::_exit(1);
      char c;
      if (::read(to_job[0], &c, 1) != 1) ::_exit(1);
      m.bytes()[page] = 2;  // dirty exactly one page
      if (::write(from_job[1], &c, 1) != 1) ::_exit(1);
      for (;;) ::pause();
    }
    struct Reap {
      pid_t pid;
      ~Reap() {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    } reap{job};
    int remote = -1;
    if (::read(from_job[0], &remote, sizeof remote) != sizeof remote) return "the test process did not answer";
    if (remote < 0) return "userfaultfd() in the test process failed";
    UniqueFd pidfd(compat::sys_pidfd_open(job, 0));
    if (!pidfd) return errno_text("pidfd_open");
    UniqueFd uffd(compat::sys_pidfd_getfd(pidfd.get(), remote, 0));
    if (!uffd) return errno_text("pidfd_getfd of its userfaultfd");
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
    if (::ioctl(uffd.get(), UFFDIO_API, &api) < 0) return errno_text("UFFDIO_API with WP_ASYNC|WP_UNPOPULATED");
    uffdio_register reg{};
    reg.range.start = m.start();
    reg.range.len = 4 * page;
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    if (::ioctl(uffd.get(), UFFDIO_REGISTER, &reg) < 0) return errno_text("UFFDIO_REGISTER (WP) of another process");
    UniqueFd pagemap(::open(fmt::format("/proc/{}/pagemap", job).c_str(), O_RDONLY | O_CLOEXEC));
    if (!pagemap) return errno_text("open /proc/PID/pagemap");
    page_region regions[8];
    pm_scan_arg arg = scan_arg(m, 4 * page, regions, 0);
    arg.category_anyof_mask = PAGE_IS_PRESENT;
    arg.return_mask = PAGE_IS_PRESENT | PAGE_IS_WRITTEN;
    arg.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
    if (::ioctl(pagemap.get(), PAGEMAP_SCAN, &arg) < 0) return errno_text("PAGEMAP_SCAN with PM_SCAN_WP_MATCHING");
    char c = 'w';
    if (::write(to_job[1], &c, 1) != 1 || ::read(from_job[0], &c, 1) != 1) return "the test process did not write";
    arg = scan_arg(m, 4 * page, regions, PAGE_IS_WRITTEN);
    int n = ::ioctl(pagemap.get(), PAGEMAP_SCAN, &arg);
    if (n < 0) return errno_text("PAGEMAP_SCAN");
    if (n != 1 || regions[0].start != m.start() + page || regions[0].end != m.start() + 2 * page)
      return fmt::format("after write-protecting and writing page 1, PAGEMAP_SCAN found {} written runs", n);
    return "";
  });
}

std::string probe_uffd_missing() {
  return in_child([]() -> std::string {
    std::string error;
    UniqueFd uffd = open_userfaultfd(error);
    if (!uffd) return error;
    uffdio_api api{};
    api.api = UFFD_API;
    if (::ioctl(uffd.get(), UFFDIO_API, &api) < 0) return errno_text("UFFDIO_API");
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    Mapping m(page, PROT_READ | PROT_WRITE);
    uffdio_register reg{};
    reg.range.start = m.start();
    reg.range.len = page;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(uffd.get(), UFFDIO_REGISTER, &reg) < 0) return errno_text("UFFDIO_REGISTER (MISSING)");
    std::vector<char> src(page, 'x');
    uffdio_copy copy{};
    copy.dst = m.start();
    copy.src = reinterpret_cast<uint64_t>(src.data());
    copy.len = page;
    if (::ioctl(uffd.get(), UFFDIO_COPY, &copy) < 0) return errno_text("UFFDIO_COPY");
    if (m.bytes()[100] != 'x') return "UFFDIO_COPY did not fill the page";
    return "";
  });
}

std::string probe_tcp_repair() {
  return in_child([]() -> std::string {
    if (::unshare(CLONE_NEWNET) < 0) return errno_text("unshare(CLONE_NEWNET)");
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return errno_text("socket");
    UniqueFd sock(s);
    int on = 1;
    if (::setsockopt(sock.get(), IPPROTO_TCP, TCP_REPAIR, &on, sizeof on) < 0) return errno_text("setsockopt TCP_REPAIR");
    int queue = TCP_SEND_QUEUE;
    if (::setsockopt(sock.get(), IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof queue) < 0)
      return errno_text("setsockopt TCP_REPAIR_QUEUE");
    return "";
  });
}

std::string probe_pidfd() {
  return in_child([]() -> std::string {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) return errno_text("pipe");
    UniqueFd r(p[0]), w(p[1]);
    int pidfd = compat::sys_pidfd_open(::getpid(), 0);
    if (pidfd < 0) return errno_text("pidfd_open");
    UniqueFd pf(pidfd);
    int got = compat::sys_pidfd_getfd(pf.get(), r.get(), 0);
    if (got < 0) return errno_text("pidfd_getfd");
    UniqueFd copy(got);
    struct stat a{}, b{};
    ::fstat(r.get(), &a);
    ::fstat(copy.get(), &b);
    if (a.st_ino != b.st_ino) return "pidfd_getfd returned another file";
    return "";
  });
}

std::string probe_kcmp() {
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_text("open /dev/null");
  UniqueFd a(fd), b(::fcntl(fd, F_DUPFD_CLOEXEC, 0)), c(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  pid_t self = ::getpid();
  int same = compat::sys_kcmp(self, self, KCMP_FILE, static_cast<unsigned long>(a.get()),
                              static_cast<unsigned long>(b.get()));
  if (same < 0) return errno_text("kcmp(KCMP_FILE)");
  int other = compat::sys_kcmp(self, self, KCMP_FILE, static_cast<unsigned long>(a.get()),
                               static_cast<unsigned long>(c.get()));
  if (same != 0 || other == 0) return fmt::format("kcmp answered {} for a dup and {} for another open", same, other);
  return "";
}

// A temporary child cgroup, removed on destruction.
struct TempCgroup {
  std::filesystem::path path;
  explicit TempCgroup(const std::filesystem::path& parent) {
    path = parent / fmt::format("stasis-check-{}", ::getpid());
    if (::mkdir(path.c_str(), 0755) < 0 && errno != EEXIST) fail_errno(errno, "mkdir {}", path.string());
  }
  ~TempCgroup() {
    // An empty cgroup may refuse rmdir for a moment after a thaw: retry briefly.
    for (int i = 0; i < 100 && ::rmdir(path.c_str()) < 0 && errno == EBUSY; ++i) std::this_thread::sleep_for(10ms);
  }
};

std::string trim_newline(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
}

std::string probe_cgroup_v1_freezer() {
  const std::filesystem::path root = "/sys/fs/cgroup/freezer";
  if (!std::filesystem::exists(root / "freezer.state") && !std::filesystem::exists(root / "tasks"))
    return "no cgroup v1 freezer hierarchy at /sys/fs/cgroup/freezer";
  TempCgroup cg(root);
  write_file(cg.path / "freezer.state", "FROZEN");
  if (!wait_for([&] { return trim_newline(read_file(cg.path / "freezer.state")) == "FROZEN"; }, 2s))
    return fmt::format("{} did not reach FROZEN", (cg.path / "freezer.state").string());
  write_file(cg.path / "freezer.state", "THAWED");
  if (!wait_for([&] { return trim_newline(read_file(cg.path / "freezer.state")) == "THAWED"; }, 2s))
    return fmt::format("{} did not reach THAWED", (cg.path / "freezer.state").string());
  return "";
}

// The cgroup v2 mount: /sys/fs/cgroup/unified (hybrid) or /sys/fs/cgroup (pure v2).
std::string cgroup2_root() {
  for (const char* path : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    struct statfs fs{};
    if (::statfs(path, &fs) == 0 && static_cast<unsigned long>(fs.f_type) == 0x63677270UL /* CGROUP2_SUPER_MAGIC */)
      return path;
  }
  return "";
}

std::string probe_cgroup_v2_freeze() {
  std::string root = cgroup2_root();
  if (root.empty()) return "no cgroup v2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup";
  TempCgroup cg(root);
  auto frozen = [&](char want) {
    std::string events = read_file(cg.path / "cgroup.events");
    return events.find(std::string("frozen ") + want) != std::string::npos;
  };
  write_file(cg.path / "cgroup.freeze", "1");
  if (!wait_for([&] { return frozen('1'); }, 2s)) return fmt::format("{}: never 'frozen 1'", (cg.path / "cgroup.events").string());
  write_file(cg.path / "cgroup.freeze", "0");
  if (!wait_for([&] { return frozen('0'); }, 2s)) return fmt::format("{}: never 'frozen 0'", (cg.path / "cgroup.events").string());
  return "";
}

// A no-op PR_SET_MM_MAP: the child's own current values, as restore sets a task's.
std::string probe_prctl_mm_map() {
  return in_child([]() -> std::string {
    unsigned int size = 0;
    if (::prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size, 0, 0) < 0) return errno_text("prctl(PR_SET_MM_MAP_SIZE)");
    if (size != sizeof(prctl_mm_map)) return fmt::format("kernel prctl_mm_map has {} bytes, we have {}", size, sizeof(prctl_mm_map));
    proc::Stat st = proc::read_stat(::getpid());
    prctl_mm_map map{};
    map.start_code = st.start_code;
    map.end_code = st.end_code;
    map.start_data = st.start_data;
    map.end_data = st.end_data;
    map.start_brk = st.start_brk;
    map.brk = reinterpret_cast<uint64_t>(::sbrk(0));
    map.start_stack = st.start_stack;
    map.arg_start = st.arg_start;
    map.arg_end = st.arg_end;
    map.env_start = st.env_start;
    map.env_end = st.env_end;
    map.auxv = nullptr;
    map.auxv_size = 0;
    map.exe_fd = static_cast<uint32_t>(-1);
    if (::prctl(PR_SET_MM, PR_SET_MM_MAP, &map, sizeof map, 0) < 0) return errno_text("prctl(PR_SET_MM, PR_SET_MM_MAP)");
    return "";
  });
}

// Names and sizes of the vDSO group, e.g. "[vvar] 16K [vvar_vclock] 8K [vdso] 8K". Restore
// compares this with the layout recorded in an image.
std::string vdso_layout(bool& found) {
  found = false;
  std::string out;
  for (const proc::MapEntry& m : proc::read_maps(::getpid())) {
    if (!m.is_vdso_group() && m.kind != proc::VmaKind::Vsyscall) continue;
    if (m.kind == proc::VmaKind::Vdso) found = true;
    if (!out.empty()) out += ' ';
    out += fmt::format("{} {}K", m.path, m.size() / 1024);
  }
  return out;
}

// Sealing needs a mapping of our own; done in a child, as a sealed mapping can never go away.
std::string probe_mseal() {
  return in_child([]() -> std::string {
    Mapping m(4096, PROT_READ);
    if (m.addr == MAP_FAILED) return errno_text("mmap");
    if (::syscall(__NR_mseal, m.addr, m.size, 0) < 0) return errno_text("mseal");
    return "";
  });
}

// MADV_GUARD_INSTALL (Linux 6.13) on a mapping of our own, removed again.
std::string probe_guard_regions() {
  Mapping m(4096, PROT_READ | PROT_WRITE);
  if (m.addr == MAP_FAILED) return errno_text("mmap");
  if (::madvise(m.addr, m.size, MADV_GUARD_INSTALL) < 0) return errno_text("madvise(MADV_GUARD_INSTALL)");
  return "";
}

std::string probe_soft_dirty() {
  return in_child([]() -> std::string {
    Mapping m(4096, PROT_READ | PROT_WRITE);
    for (const proc::MapEntry& e : proc::read_smaps(::getpid())) {
      if (e.start == m.start()) {
        if (e.has_vm_flag("sd")) return "";
        return "new mappings carry no 'sd' VmFlag: CONFIG_MEM_SOFT_DIRTY is off (stasis uses "
               "userfaultfd WP_ASYNC + PAGEMAP_SCAN instead)";
      }
    }
    return "test mapping not found in /proc/self/smaps";
  });
}

// ---------------------------------------------------------------------------------------
// The table.

struct Probe {
  const char* name;
  bool required;
  const char* purpose;
  std::function<std::string(std::string& detail)> run;  // "" = ok; may set detail when ok
};

// Runs a probe, turning an exception into its message.
std::string guarded(std::string (*fn)()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::function<std::string(std::string&)> simple(std::string (*fn)()) {
  return [fn](std::string&) { return fn(); };
}

const std::vector<Probe>& probes() {
  static const std::vector<Probe> table = {
      {"ns-pid", true, "containers get their own PID numbering; restore recreates it",
       [](std::string&) { return probe_namespace(CLONE_NEWPID, "PID"); }},
      {"ns-mnt", true, "container root filesystem and mounts",
       [](std::string&) { return probe_namespace(CLONE_NEWNS, "NS"); }},
      {"ns-net", true, "container network and test hosts",
       [](std::string&) { return probe_namespace(CLONE_NEWNET, "NET"); }},
      {"ns-uts", true, "container hostname", [](std::string&) { return probe_namespace(CLONE_NEWUTS, "UTS"); }},
      {"ns-ipc", true, "container SysV IPC and POSIX queues",
       [](std::string&) { return probe_namespace(CLONE_NEWIPC, "IPC"); }},
      {"ns-cgroup", false, "container's view of its cgroup",
       [](std::string&) { return probe_namespace(CLONE_NEWCGROUP, "CGROUP"); }},
      {"ns-time", false, "monotonic clocks that do not jump across migration",
       [](std::string&) { return probe_namespace(CLONE_NEWTIME, "TIME"); }},
      {"ns-user", false, "rootless containers", [](std::string&) { return probe_namespace(CLONE_NEWUSER, "USER"); }},
      {"clone3-set-tid", true, "restore gives every task its original PID (PID 1 of a new namespace, then any PID)",
       simple(probe_clone3_set_tid)},
      {"ptrace", true, "seize and stop tasks, read registers and XSAVE state, inject system calls",
       simple(probe_ptrace)},
      {"ptrace-rseq", true, "dump each thread's rseq area so restore can register it again",
       simple(probe_rseq_config)},
      {"process-vm", true, "copy memory out of and into stopped tasks (process_vm_readv/writev)",
       simple(probe_process_vm)},
      {"pagemap-scan", false,
       "find present and swapped pages in one ioctl (PAGEMAP_SCAN, Linux 6.7+); without it dump reads "
       "/proc/PID/pagemap",
       simple(probe_pagemap_scan)},
      {"timer-restore-ids", false,
       "restore POSIX timers with their ids (prctl PR_TIMER_CREATE_RESTORE_IDS, Linux 6.17); without it a job "
       "with POSIX timers cannot be restored",
       simple(probe_timer_restore_ids)},
      {"mseal", false, "sealed mappings (mseal, Linux 6.10) stay sealed after restore",
       simple(probe_mseal)},
      {"guard-regions", false, "guard regions (MADV_GUARD_INSTALL, Linux 6.13) are found by the dump and installed again",
       simple(probe_guard_regions)},
      {"uffd-wp-async", false, "incremental and pre-copy dumps: track written pages (userfaultfd WP_ASYNC + PAGEMAP_SCAN)",
       simple(probe_uffd_wp_async)},
      {"dirty-tracking", false,
       "dump --pre-dump and --parent: track the pages a job writes (a userfaultfd of the job's, write-protect async "
       "mode, PAGEMAP_SCAN); without it every dump saves every page",
       simple(probe_dirty_tracking)},
      {"uffd-missing", false, "lazy restore: pages arrive on first touch (userfaultfd MISSING + UFFDIO_COPY)",
       simple(probe_uffd_missing)},
      {"tcp-repair", false, "checkpoint and restore established TCP connections (TCP_REPAIR)",
       simple(probe_tcp_repair)},
      {"pidfd", true, "take open files out of a task (pidfd_open + pidfd_getfd)", simple(probe_pidfd)},
      {"kcmp", true, "tell whether two tasks share one open file (kcmp KCMP_FILE)", simple(probe_kcmp)},
      {"cgroup-v1-freezer", false, "freeze a container's tasks (cgroup v1 freezer.state)",
       simple(probe_cgroup_v1_freezer)},
      {"cgroup-v2-freeze", false, "freeze a container's tasks (cgroup v2 cgroup.freeze)",
       simple(probe_cgroup_v2_freeze)},
      {"cgroup-freezer", true, "freeze a container while it is dumped (v1 or v2 freezer)",
       [](std::string& detail) -> std::string {
         std::string v1 = guarded(probe_cgroup_v1_freezer), v2 = guarded(probe_cgroup_v2_freeze);
         if (v1.empty() || v2.empty()) {
           detail = v1.empty() && v2.empty() ? "v1 and v2" : v1.empty() ? "v1" : "v2";
           return "";
         }
         return "v1: " + v1 + "; v2: " + v2;
       }},
      {"prctl-mm-map", true, "restore brk, argument/environment bounds and /proc/PID/exe (PR_SET_MM_MAP)",
       simple(probe_prctl_mm_map)},
      {"vdso-layout", true, "restore moves the fresh vDSO/vvar where the dumped ones were",
       [](std::string& detail) -> std::string {
         bool found = false;
         detail = vdso_layout(found);
         return found ? "" : "no [vdso] mapping in /proc/self/maps";
       }},
      {"soft-dirty", false, "(not used) soft-dirty page tracking; stasis tracks written pages with userfaultfd instead", simple(probe_soft_dirty)},
  };
  return table;
}

FeatureResult run_probe(const Probe& probe) {
  FeatureResult r;
  r.name = probe.name;
  r.required = probe.required;
  r.purpose = probe.purpose;
  auto start = Clock::now();
  std::string detail, error;
  try {
    error = probe.run(detail);
  } catch (const std::exception& e) {
    error = e.what();
  }
  r.millis = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  r.ok = error.empty();
  r.detail = r.ok ? detail : error;
  return r;
}


}  // namespace

std::vector<FeatureResult> probe_features() {
  std::vector<FeatureResult> out;
  for (const Probe& p : probes()) out.push_back(run_probe(p));
  return out;
}

std::vector<std::string> feature_names() {
  std::vector<std::string> out;
  for (const Probe& p : probes()) out.emplace_back(p.name);
  return out;
}

FeatureResult probe_feature(std::string_view name) {
  for (const Probe& p : probes())
    if (name == p.name) return run_probe(p);
  fail("unknown kernel feature '{}'", name);
}

void require_features(std::string_view who, std::initializer_list<std::string_view> names) {
  std::string missing;
  for (std::string_view name : names) {
    FeatureResult r = probe_feature(name);
    if (r.ok) continue;
    if (!missing.empty()) missing += "; ";
    missing += fmt::format("{} needs {} ({}): {}", who, r.name, r.purpose, r.detail);
  }
  if (!missing.empty()) throw UnsupportedError(missing + " (run 'stasis check' for all kernel features)");
}

bool all_required_ok(const std::vector<FeatureResult>& results) {
  for (const FeatureResult& r : results)
    if (r.required && !r.ok) return false;
  return true;
}

std::string format_line(const FeatureResult& r) {
  std::string line = fmt::format("{:<8} {:<9} {:<18} {}", r.ok ? "ok" : "missing", r.required ? "required" : "optional",
                                 r.name, r.purpose);
  if (!r.detail.empty()) line += fmt::format(" [{}]", r.detail);
  return line;
}

std::string to_json(const std::vector<FeatureResult>& results) {
  std::string out = fmt::format("{{\"ok\":{},\"features\":[", all_required_ok(results) ? "true" : "false");
  for (size_t i = 0; i < results.size(); ++i) {
    const FeatureResult& r = results[i];
    if (i) out += ',';
    out += fmt::format("{{\"name\":{},\"ok\":{},\"required\":{},\"purpose\":{},\"detail\":{},\"ms\":{:.1f}}}",
                       json_string(r.name), r.ok ? "true" : "false", r.required ? "true" : "false",
                       json_string(r.purpose), json_string(r.detail), r.millis);
  }
  return out + "]}";
}

}  // namespace stasis::features
