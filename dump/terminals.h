// Terminals: pty masters (/dev/ptmx) and slaves (/dev/pts/N), /dev/tty, consoles, virtual
// and serial terminals. Restore cannot rebuild a terminal (a pty pair, its line discipline
// and settings, a session's controlling terminal), so the dump refuses a process that holds
// one, naming pid, fd and terminal, before anything is changed.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace stasis::dump {

class TerminalCheck {
 public:
  // What terminal the character device major:minor is ("pty slave", "pty master",
  // "the controlling terminal's alias /dev/tty", ...), or nullopt when it is no terminal; from the
  // drivers the kernel lists in /proc/tty/drivers.
  std::optional<std::string> kind(unsigned major, unsigned minor);

  // Throws UnsupportedError for fd of pid, a terminal of that kind at link.
  [[noreturn]] static void refuse_fd(pid_t pid, int fd, const std::string& link, const std::string& kind);
  // Throws UnsupportedError when pid has a controlling terminal (even without an fd on it:
  // the session it leads or belongs to cannot be rebuilt around the terminal).
  void refuse_controlling_terminal(pid_t pid);

 private:
  struct Driver {
    std::string name;  // "pty_slave", "/dev/tty", ...
    std::string path;  // "/dev/pts", "/dev/ttyS", ...
    unsigned major = 0, first = 0, last = 0;
    std::string type;  // "pty:slave", "system:/dev/tty", "serial", "console", ...
  };
  const Driver* find(unsigned major, unsigned minor);
  bool loaded_ = false;
  std::vector<Driver> drivers_;
};

}  // namespace stasis::dump
