// A command run on a pseudo-terminal the test holds the master of, as a user's terminal
// emulator would: the command is a session leader whose controlling terminal and stdio are
// the slave. The test types into the master and reads what the command shows. The command is
// killed (by its pid) and reaped whatever happens.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace stasis::test {

class PtySession {
 public:
  PtySession() = default;
  ~PtySession() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      int st;
      ::waitpid(pid_, &st, 0);
    }
    if (master_ >= 0) ::close(master_);
  }
  PtySession(const PtySession&) = delete;
  PtySession& operator=(const PtySession&) = delete;

  // Starts argv (argv[0] a path) with a rows x cols terminal.
  ::testing::AssertionResult start(const std::vector<std::string>& argv, unsigned short rows = 24,
                                   unsigned short cols = 80) {
    master_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master_ < 0 || ::grantpt(master_) < 0 || ::unlockpt(master_) < 0)
      return ::testing::AssertionFailure() << "open a pty: " << strerror(errno);
    const std::string slave = ::ptsname(master_);
    winsize ws{rows, cols, 0, 0};
    ::ioctl(master_, TIOCSWINSZ, &ws);
    std::vector<std::string> args = argv;
    std::vector<char*> cargv;
    for (auto& a : args) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) return ::testing::AssertionFailure() << "fork: " << strerror(errno);
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::setsid();
      int tty = ::open(slave.c_str(), O_RDWR);  // a session leader's first terminal: its controlling one
      if (tty < 0) ::_exit(126);
      for (int k = 0; k < 3; ++k) ::dup2(tty, k);
      ::close_range(3, ~0U, 0);
      ::execv(cargv[0], cargv.data());
      ::_exit(127);
    }
    return ::testing::AssertionSuccess();
  }

  void type(const std::string& keys) {
    size_t done = 0;
    while (done < keys.size()) {
      ssize_t n = ::write(master_, keys.data() + done, keys.size() - done);
      if (n <= 0 && errno != EINTR) return;
      if (n > 0) done += static_cast<size_t>(n);
    }
  }

  void resize(unsigned short rows, unsigned short cols) {
    winsize ws{rows, cols, 0, 0};
    ::ioctl(master_, TIOCSWINSZ, &ws);  // the kernel sends SIGWINCH to the foreground group
  }

  // Reads until `want` has appeared in the output since the last expect (what follows it is
  // kept for the next one), or timeout; the output read is in seen() either way.
  ::testing::AssertionResult expect(const std::string& want,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      size_t at = pending_.find(want);
      if (at != std::string::npos) {
        pending_.erase(0, at + want.size());
        return ::testing::AssertionSuccess();
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !read_some(static_cast<int>(left.count())))
        return ::testing::AssertionFailure() << "'" << want << "' not shown; the terminal showed: " << seen_;
    }
  }

  // Waits for the command to exit (reading its output meanwhile); its status, or nullopt.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!status_) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
      read_some(20);
    }
    while (read_some(0)) {
    }
    return status_;
  }

  const std::string& seen() const { return seen_; }
  pid_t pid() const { return pid_; }

 private:
  bool read_some(int timeout_ms) {
    pollfd p{master_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return timeout_ms > 0 && !(p.revents & (POLLHUP | POLLERR));
    char buf[4096];
    ssize_t n = ::read(master_, buf, sizeof buf);
    if (n <= 0) {
      if (timeout_ms > 0) ::usleep(static_cast<useconds_t>(std::min(timeout_ms, 20)) * 1000);
      return false;
    }
    seen_.append(buf, static_cast<size_t>(n));
    pending_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int master_ = -1;
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string seen_, pending_;
};

}  // namespace stasis::test
