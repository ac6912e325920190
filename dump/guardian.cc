#include "dump/guardian.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "common/error.h"
#include "common/log.h"

namespace stasis::dump {

namespace {

constexpr char kArm = 'A';
constexpr char kDisarm = 'D';
constexpr char kGoodbye = 'Q';

// The guardian's whole life, in the child of fork(): only async-signal-safe calls (the dumper
// may have threads).
[[noreturn]] void guard(int pipe_fd, const char* thaw_path, const char* thaw_value) {
  ::setsid();
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) ::sigaction(sig, &ignore, nullptr);
  // No fd of the dumper kept open (its output pipes would not see their end).
  int null_fd = ::open("/dev/null", O_RDWR);
  if (null_fd >= 0)
    for (int fd = 0; fd <= 2; ++fd)
      if (fd != pipe_fd) ::dup2(null_fd, fd);
  const int keep = ::dup2(pipe_fd, 3) < 0 ? pipe_fd : 3;
  ::close_range(4, ~0U, 0);
  bool armed = false;
  for (;;) {
    char c = 0;
    ssize_t n = ::read(keep, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n == 1) {
      if (c == kArm) armed = true;
      else if (c == kDisarm) armed = false;
      else if (c == kGoodbye) ::_exit(0);
      continue;
    }
    break;  // the dumper is gone
  }
  if (armed) {
    int fd = ::open(thaw_path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      (void)!::write(fd, thaw_value, std::strlen(thaw_value));
      ::close(fd);
    }
  }
  ::_exit(0);
}

}  // namespace

Guardian::Guardian(const Cgroup& cgroup, bool paused) : paused_(paused) {
  const auto& paths = cgroup.paths();
  std::string thaw_path;  // what to write where: the job's own freezer state
  const char* thaw_value = nullptr;
  if (cgroup.driver() == CgroupDriver::V1) {
    thaw_path = (std::filesystem::path(paths.at("freezer")) / "freezer.state").string();
    thaw_value = paused ? "FROZEN" : "THAWED";
  } else {
    thaw_path = (std::filesystem::path(paths.at("unified")) / "cgroup.freeze").string();
    thaw_value = paused ? "1" : "0";
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) fail_errno(errno, "pipe for the dump's guardian");
  UniqueFd read_end(fds[0]);
  pipe_ = UniqueFd(fds[1]);
  pid_ = ::fork();
  if (pid_ < 0) fail_errno(errno, "fork the dump's guardian");
  if (pid_ == 0) {
    ::close(fds[1]);
    guard(fds[0], thaw_path.c_str(), thaw_value);
  }
  log::debug("guardian pid {} watches over cgroup {} ({} if we die)", pid_, thaw_path, thaw_value);
  if (paused_) send(kArm);
}

Guardian::~Guardian() {
  if (pid_ <= 0) return;
  try {
    send(kGoodbye);
  } catch (const std::exception& e) {
    log::debug("{}", e.what());
  }
  pipe_.reset();
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

void Guardian::arm() {
  if (!paused_) send(kArm);
}
void Guardian::disarm() {
  if (!paused_) send(kDisarm);
}

void Guardian::send(char c) {
  for (;;) {
    ssize_t n = ::write(pipe_.get(), &c, 1);
    if (n == 1) return;
    if (n < 0 && errno == EINTR) continue;
    fail_errno(n < 0 ? errno : EIO, "tell the dump's guardian (pid {})", pid_);
  }
}

}  // namespace stasis::dump
