#include "dump/dirty_tracking.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <random>
#include <sstream>

#include "common/compat.h"
#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/proc.h"
#include "dump/inject.h"

namespace stasis::dump {

namespace {

namespace fs = std::filesystem;

constexpr int kTrackerUffdFd = 3;  // where the tracker keeps the userfaultfd
constexpr int kTrackerJobFd = 4;   // and a pidfd of the job
#ifndef UFFD_USER_MODE_ONLY
constexpr int UFFD_USER_MODE_ONLY = 1;
#endif

struct Record {
  pid_t job_pid = 0;
  uint64_t job_start = 0;
  pid_t tracker_pid = 0;
  uint64_t tracker_start = 0;
  int tracker_fd = -1;
  std::string last_dump;  // empty: invalidated
};

fs::path record_path(const fs::path& state_root, pid_t pid) {
  return state_root / "dirty-tracking" / std::to_string(pid);
}

std::optional<Record> read_record(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  std::istringstream in(read_file(path));
  Record r;
  for (std::string key; in >> key;) {
    if (key == "job_pid") in >> r.job_pid;
    else if (key == "job_start") in >> r.job_start;
    else if (key == "tracker_pid") in >> r.tracker_pid;
    else if (key == "tracker_start") in >> r.tracker_start;
    else if (key == "tracker_fd") in >> r.tracker_fd;
    else if (key == "last_dump") {
      std::getline(in, r.last_dump);
      r.last_dump.erase(0, r.last_dump.find_first_not_of(' '));
    }
  }
  if (r.job_pid <= 0 || r.tracker_pid <= 0 || r.tracker_fd < 0) fail("{}: not a dirty-tracking record", path.string());
  return r;
}

void write_record(const fs::path& path, const Record& r) {
  write_file_atomic(path,
                    fmt::format("job_pid {}\njob_start {}\ntracker_pid {}\ntracker_start {}\ntracker_fd {}\nlast_dump {}\n",
                                r.job_pid, r.job_start, r.tracker_pid, r.tracker_start, r.tracker_fd, r.last_dump),
                    /*sync=*/false);
}

std::optional<uint64_t> start_time(pid_t pid) {
  try {
    return proc::read_stat(pid).starttime;
  } catch (const Error&) {
    return std::nullopt;
  }
}

// The lock on a pid's record, held for a dump's length: two dumps never share a tracking.
UniqueFd lock_record(const fs::path& record) {
  std::error_code ec;
  fs::create_directories(record.parent_path(), ec);
  if (ec) fail("create {}: {}", record.parent_path().string(), ec.message());
  UniqueFd fd = open_or_throw(record.string() + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  while (::flock(fd.get(), LOCK_EX) < 0)
    if (errno != EINTR) fail_errno(errno, "lock {}.lock", record.string());
  return fd;
}

// A pidfd of the tracker, if it is still the process the record names.
UniqueFd open_tracker(const Record& r) {
  UniqueFd pidfd(compat::sys_pidfd_open(r.tracker_pid, 0));
  if (!pidfd) return {};
  auto start = start_time(r.tracker_pid);
  if (!start || *start != r.tracker_start) return {};
  return pidfd;
}

void stop_tracker(const Record& r) {
  UniqueFd pidfd = open_tracker(r);
  if (!pidfd) return;
  if (::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0) < 0)
    log::warn("could not stop the dirty tracker of pid {} (pid {}): {}", r.job_pid, r.tracker_pid,
              describe_errno(errno));
}

void remove_record(const fs::path& path) {
  std::error_code ec;
  fs::remove(path, ec);
}

// The tracker: holds the userfaultfd until the job exits (or SIGKILL from a dump that ends
// the tracking), then removes its record if the record is still its own.
[[noreturn]] void run_tracker(int uffd, int job_pidfd, const fs::path& record) {
  ::setsid();
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
  // Only what it needs: no pipe of the dumper's caller stays open (a caller reading stasis's
  // output until EOF would wait for the job's end), no lock of the dump's directory.
  int high_uffd = ::fcntl(uffd, F_DUPFD_CLOEXEC, 100);
  int high_job = ::fcntl(job_pidfd, F_DUPFD_CLOEXEC, 100);
  if (high_uffd < 0 || high_job < 0 || ::dup2(high_uffd, kTrackerUffdFd) < 0 || ::dup2(high_job, kTrackerJobFd) < 0)
    ::_exit(1);
  ::syscall(SYS_close_range, kTrackerJobFd + 1, ~0U, 0);
  int null = ::open("/dev/null", O_RDWR);
  for (int fd = 0; fd <= 2; ++fd) ::dup2(null, fd);
  if (null > 2) ::close(null);
  ::prctl(PR_SET_NAME, "stasis-track");
  pollfd p{kTrackerJobFd, POLLIN, 0};
  while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
  try {
    auto r = read_record(record);
    if (r && r->tracker_pid == ::getpid()) remove_record(record);
  } catch (...) {
  }
  ::_exit(0);
}

}  // namespace

std::string new_dump_id() {
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> d;
  uint64_t a = d(rd), b = d(rd);
  return fmt::format("{:016x}{:016x}", a, b);
}

std::optional<DirtyTracking> DirtyTracking::resume(const fs::path& state_root, pid_t pid,
                                                   const std::string& parent_dump_id) {
  DirtyTracking t;
  t.pid_ = pid;
  t.record_ = record_path(state_root, pid);
  t.lock_ = lock_record(t.record_);
  auto job_start = start_time(pid);
  if (!job_start) fail("pid {}: read /proc/{}/stat", pid, pid);
  t.job_start_ = *job_start;
  auto r = read_record(t.record_);
  const std::string all_pages = parent_dump_id.empty() ? "" : ": every page is saved";
  if (!r) {
    if (!parent_dump_id.empty()) log::warn("pid {} has no dirty tracking (no pre-dump started it){}", pid, all_pages);
    return std::nullopt;
  }
  if (r->job_pid != pid || r->job_start != t.job_start_) {
    remove_record(t.record_);  // of an earlier process with this pid
    if (!parent_dump_id.empty()) log::warn("pid {} has no dirty tracking (no pre-dump started it){}", pid, all_pages);
    return std::nullopt;
  }
  UniqueFd tracker = open_tracker(*r);
  if (tracker) t.uffd_.reset(compat::sys_pidfd_getfd(tracker.get(), r->tracker_fd, 0));
  std::string what;
  if (t.uffd_) {
    try {
      what = proc::read_link(fmt::format("/proc/self/fd/{}", t.uffd_.get()));
    } catch (const Error&) {
    }
  }
  if (!t.uffd_ || what != "anon_inode:[userfaultfd]") {
    log::warn("the dirty tracking of pid {} ended (its tracker, pid {}, is gone){}", pid, r->tracker_pid, all_pages);
    remove_record(t.record_);
    return std::nullopt;
  }
  t.tracker_pid_ = r->tracker_pid;
  t.tracker_start_ = r->tracker_start;
  t.tracker_fd_ = r->tracker_fd;
  t.incremental_ = !parent_dump_id.empty() && r->last_dump == parent_dump_id;
  if (!parent_dump_id.empty() && !t.incremental_) {
    log::warn("the dirty tracking of pid {} does not count from the parent checkpoint's dump ({}, not {}){}", pid,
              r->last_dump.empty() ? "an unfinished dump" : r->last_dump, parent_dump_id, all_pages);
  }
  return t;
}

DirtyTracking DirtyTracking::start(const fs::path& state_root, pid_t pid, Injector& injector,
                                   ptrace::SeizedThread& thread) {
  DirtyTracking t;
  t.pid_ = pid;
  t.record_ = record_path(state_root, pid);
  t.lock_ = lock_record(t.record_);
  if (auto old = read_record(t.record_)) stop_tracker(*old);  // resume() found it unusable
  remove_record(t.record_);
  auto job_start = start_time(pid);
  if (!job_start) fail("pid {}: read /proc/{}/stat", pid, pid);
  t.job_start_ = *job_start;
  // User-mode faults only is enough (write-protect faults in async mode are resolved by the
  // kernel itself, for the kernel's own writes too) and needs no privilege in the job.
  long remote = injector.call(thread, SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
  if (remote < 0)
    throw UnsupportedError(fmt::format("pid {}: dirty tracking needs a userfaultfd in the job, and userfaultfd(2) there "
                                       "failed: {}",
                                       pid, describe_errno(static_cast<int>(-remote))));
  UniqueFd pidfd(compat::sys_pidfd_open(pid, 0));
  if (pidfd) t.uffd_.reset(compat::sys_pidfd_getfd(pidfd.get(), static_cast<int>(remote), 0));
  const int saved = errno;
  injector.call(thread, SYS_close, static_cast<uint64_t>(remote));  // ours now, or given up
  if (!t.uffd_) fail_errno(saved, "pid {}: pidfd_getfd of its userfaultfd (fd {})", pid, remote);
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
  if (::ioctl(t.uffd_.get(), UFFDIO_API, &api) < 0)
    throw UnsupportedError(fmt::format("pid {}: this kernel's userfaultfd has no write-protect async mode (UFFDIO_API "
                                       "with WP_ASYNC and WP_UNPOPULATED: {}); dirty tracking needs Linux 6.7 or "
                                       "later (see `stasis check`)",
                                       pid, describe_errno(errno)));
  return t;
}

DirtyTracking::~DirtyTracking() = default;

void DirtyTracking::invalidate() {
  if (tracker_pid_ == 0) return;
  write_record(record_, Record{pid_, job_start_, tracker_pid_, tracker_start_, tracker_fd_, ""});
}

void DirtyTracking::keep(const std::string& dump_id) {
  if (tracker_pid_ == 0) {
    UniqueFd job(compat::sys_pidfd_open(pid_, 0));
    if (!job) fail_errno(errno, "pidfd_open of pid {}", pid_);
    const fs::path record = record_;
    pid_t child = ::fork();
    if (child < 0) fail_errno(errno, "fork the dirty tracker of pid {}", pid_);
    if (child == 0) run_tracker(uffd_.get(), job.get(), record);
    auto start = start_time(child);
    if (!start) fail("the dirty tracker of pid {} (pid {}) exited at once", pid_, child);
    tracker_pid_ = child;
    tracker_start_ = *start;
    tracker_fd_ = kTrackerUffdFd;
    log::debug("pid {}: dirty tracker started, pid {}", pid_, child);
  }
  write_record(record_, Record{pid_, job_start_, tracker_pid_, tracker_start_, tracker_fd_, dump_id});
}

void DirtyTracking::end() {
  if (tracker_pid_ != 0) stop_tracker(Record{pid_, job_start_, tracker_pid_, tracker_start_, tracker_fd_, ""});
  remove_record(record_);
  remove_record(record_.string() + ".lock");  // held by us: no other dump of this job waits on it
  tracker_pid_ = 0;
  uffd_.reset();
}

void end_dirty_tracking(const fs::path& state_root, pid_t pid) {
  try {
    const fs::path record = record_path(state_root, pid);
    std::error_code ec;
    if (!fs::exists(record, ec)) return;
    UniqueFd lock = lock_record(record);
    if (auto r = read_record(record)) stop_tracker(*r);
    remove_record(record);
  } catch (const Error& e) {
    log::warn("ending the dirty tracking of pid {}: {}", pid, e.what());
  }
}

}  // namespace stasis::dump
