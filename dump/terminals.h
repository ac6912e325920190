// Terminals: pty masters (/dev/ptmx) and slaves (/dev/pts/N), /dev/tty, consoles, virtual
// and serial terminals. The terminal of a `stasis run -t` job (its console) is saved: its fds
// are the container's plumbing (INHERITED: the restored container's monitor makes a new pty
// pair), and its settings, window size, session and foreground group go to ttys.img. So are
// the ends of pty pairs the job opened from /dev/ptmx (FdEntry TTY), when both ends are the
// job's and no byte waits in them. Any other terminal is refused, naming pid, fd and terminal,
// before anything is changed.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tty.pb.h"

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
  // (A controlling terminal that is the console is recorded instead, and so is a pty slave,
  // which check_pairs accepts when the pair is the job's: `script`, tmux.) Called once for
  // every process of the job, after its fds.
  void refuse_controlling_terminal(pid_t pid);

  // The container's -t terminal, its path on the host (ContainerState.console_path): reads its
  // settings and window size now.
  void set_console(const std::string& path);
  // The terminal of pid that was made outside the job (`--shell-job`: the shell's terminal it
  // was started from; the console runc made for a `terminal: true` container): the path
  // /proc/PID/fd/N of pid's fd on its controlling terminal, or (stdio_too) on the pty slave
  // at its standard fds when it has none; "" when pid has no such terminal.
  static std::string outside_terminal_of(pid_t pid, bool stdio_too);
  // True when a character device held by pid (st: its stat) is the console: the slave
  // itself, or /dev/tty while the console is pid's controlling terminal.
  bool is_console(pid_t pid, const struct stat& st);
  // Whether major:minor is an end of a pty pair: a master opened from a ptmx, or a slave.
  bool is_pty(unsigned major, unsigned minor);
  // Adds the ttys.img record `id` for fd of pid, a pty end (is_pty), whose open flags are
  // flags. Throws UnsupportedError when bytes wait in it (they cannot be read without taking
  // them from the job).
  void describe_pty(pid_t pid, int pidfd, int fd, const std::string& link, const struct stat& st, uint32_t flags,
                    uint64_t id);
  // Throws UnsupportedError for a pty slave whose master is not the job's, and for a
  // controlling terminal that cannot come back: a pair not the job's, a session whose leader
  // or foreground group's leader is not in the job. A pair of the job's that is a session's
  // controlling terminal gets that session and its foreground group in its records.
  void check_pairs();
  // Once every process is collected (and frozen): the bytes waiting in each pair, both ways,
  // saved in the master's record and put back as they were.
  void save_queues();
  // Writes ttys.img (even when empty).
  void write_images(const std::filesystem::path& dir) const;

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
  std::optional<dev_t> console_;
  dev_t console_devpts_ = 0;  // the devpts instance of a console that is a pty slave
  pb::TtyState console_state_;
  struct PtyEnd {
    pb::TtyState state;
    pid_t pid;
    int fd;
    std::string link;
  };
  std::vector<PtyEnd> ptys_;
  // A process whose controlling terminal is a pty slave, in host pids.
  struct Ctty {
    pid_t pid, session, foreground;
    unsigned index;
  };
  std::vector<Ctty> cttys_;
  std::vector<pid_t> pids_;                               // every process of the job
  std::map<pid_t, std::pair<pid_t, int>> sessions_;       // pid -> its session and tty_nr
  [[noreturn]] void refuse_terminal(pid_t pid, unsigned major, unsigned minor);
  void check_controlling_ptys();
};

}  // namespace stasis::dump
