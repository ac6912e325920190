// The terminal of a -t job: the pty pair, the monitor's relay and the attach client (console.h).
#include "launcher/console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/compat.h"
#include "common/error.h"
#include "common/file_util.h"
#include "launcher/container.h"
#include "launcher/state_store.h"

namespace stasis::launcher {

namespace fs = std::filesystem;

namespace {

constexpr int kStallMs = 2000;  // a client or the job's input that takes nothing for this long is dropped
constexpr size_t kChunk = 4096;

// A unix socket address for path. Paths longer than sun_path are reached through an O_PATH fd
// of their folder (/proc/self/fd/N/NAME), which `dir` keeps open for as long as it is used.
sockaddr_un socket_address(const fs::path& path, UniqueFd& dir) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string where = path.string();
  if (where.size() >= sizeof addr.sun_path) {
    dir.reset(::open(path.parent_path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir) fail_errno(errno, "open {}", path.parent_path().string());
    where = fmt::format("/proc/self/fd/{}/{}", dir.get(), path.filename().string());
    if (where.size() >= sizeof addr.sun_path) fail("socket name {} is too long", path.filename().string());
  }
  std::memcpy(addr.sun_path, where.c_str(), where.size() + 1);
  return addr;
}

// Sends one message, waiting (bounded) while the peer's queue is full. False: peer gone or stuck.
bool send_message(int fd, const void* data, size_t size) {
  for (;;) {
    if (::send(fd, data, size, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return true;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return false;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, kStallMs) <= 0) return false;
  }
}

void write_bounded(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, kStallMs) > 0) continue;
    }
    return;  // the job does not read its terminal: what it has not taken is dropped
  }
}

class Relay {
 public:
  explicit Relay(ConsoleRelay& r) : r_(r) {}

  void output(const char* data, size_t size) {
    if (r_.log >= 0) write_bounded(r_.log, data, size);
    for (size_t i = 0; i < clients.size();) {
      if (send_message(clients[i].get(), data, size)) ++i;
      else clients.erase(clients.begin() + static_cast<long>(i));
    }
  }

  // One message from client i; false when it has gone.
  bool from_client(size_t i) {
    char buf[kChunk + 1];
    ssize_t n = ::recv(clients[i].get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n <= 0) return false;
    if (buf[0] == 'D' && r_.stdin_pipe) write_bounded(r_.stdin_pipe.get(), buf + 1, static_cast<size_t>(n - 1));
    if (buf[0] == 'E' && r_.stdin_pipe) r_.stdin_pipe.reset();  // the job reads end of file
    if (r_.master < 0) return true;
    if (buf[0] == 'D' && r_.interactive) write_bounded(r_.master, buf + 1, static_cast<size_t>(n - 1));
    if (buf[0] == 'E' && r_.interactive) {
      // The client's input ended (a pipe, not a terminal): the terminal's end-of-file key,
      // which a reader at the start of a line takes as end of file.
      termios t{};
      if (::tcgetattr(r_.master, &t) == 0 && t.c_cc[VEOF] != _POSIX_VDISABLE) {
        const char eof = static_cast<char>(t.c_cc[VEOF]);
        write_bounded(r_.master, &eof, 1);
      }
    }
    if (buf[0] == 'W' && static_cast<size_t>(n) == 1 + sizeof(winsize)) {
      winsize ws;
      std::memcpy(&ws, buf + 1, sizeof ws);
      ::ioctl(r_.master, TIOCSWINSZ, &ws);  // the job gets SIGWINCH from the kernel
    }
    return true;
  }

  // Reads what the master has; false at its end (no slave open any more) or when empty.
  bool drain_once() {
    if (r_.master < 0) return false;
    char buf[kChunk];
    ssize_t n = ::read(r_.master, buf, sizeof buf);
    if (n > 0) {
      output(buf, static_cast<size_t>(n));
      return true;
    }
    return false;
  }

  std::vector<UniqueFd> clients;

 private:
  ConsoleRelay& r_;
};

}  // namespace

fs::path attach_socket_path(const fs::path& root, const std::string& name) { return root / (name + ".attach"); }

bool has_attach_socket(const pb::ContainerConfig& config) {
  return config.tty() || (config.detach() && config.interactive());
}

ConsolePair open_console_pair() {
  ConsolePair pair;
  pair.master.reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pair.master) fail_errno(errno, "-t: open a pseudo-terminal (/dev/ptmx)");
  if (::grantpt(pair.master.get()) < 0 || ::unlockpt(pair.master.get()) < 0)
    fail_errno(errno, "-t: unlock the pseudo-terminal");
  char name[64];
  if (::ptsname_r(pair.master.get(), name, sizeof name) != 0) fail_errno(errno, "-t: name of the pseudo-terminal");
  pair.slave_path = name;
  pair.slave.reset(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pair.slave) fail_errno(errno, "-t: open {}", name);
  winsize ws{};
  if (::ioctl(0, TIOCGWINSZ, &ws) < 0 || ws.ws_row == 0) ws = winsize{24, 80, 0, 0};
  ::ioctl(pair.master.get(), TIOCSWINSZ, &ws);
  return pair;
}

std::pair<UniqueFd, UniqueFd> console_socketpair() {
  int sv[2];
  check_sys(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), "-t: socketpair");
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

void take_console_as_controlling_terminal() {
  // PID 1 is the monitor's child, not a group leader: setsid works.
  check_sys(::setsid(), "-t: setsid");
  check_sys(::ioctl(0, TIOCSCTTY, 0), "-t: make the pseudo-terminal the controlling terminal");
}

UniqueFd listen_console(const fs::path& path) {
  UniqueFd listener(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener) return listener;
  UniqueFd dir;
  try {
    ::unlink(path.c_str());
    sockaddr_un addr = socket_address(path, dir);
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || ::listen(listener.get(), 8) < 0)
      return UniqueFd();  // no attach then; the job runs and logs all the same
    ::chmod(path.c_str(), 0600);
  } catch (const Error&) {
    return UniqueFd();
  }
  return listener;
}

int relay_console(ConsoleRelay r, pid_t pid1) {
  if (r.master >= 0) ::fcntl(r.master, F_SETFL, ::fcntl(r.master, F_GETFL) | O_NONBLOCK);
  if (r.stdin_pipe) ::fcntl(r.stdin_pipe.get(), F_SETFL, O_NONBLOCK);
  Relay relay(r);
  if (r.first_client) relay.clients.push_back(std::move(r.first_client));
  UniqueFd listener = std::move(r.listener);
  UniqueFd pidfd(compat::sys_pidfd_open(pid1, 0));
  int status = 0;
  bool master_hung_up = false;
  for (;;) {
    std::vector<pollfd> fds;
    fds.push_back({pidfd.get(), POLLIN, 0});
    fds.push_back({master_hung_up ? -1 : r.master, POLLIN, 0});
    fds.push_back({listener.get(), POLLIN, 0});
    for (const auto& c : relay.clients) fds.push_back({c.get(), POLLIN, 0});
    // With no slave open (the job closed its terminal), the master reports POLLHUP without
    // end: look again now and then for a slave opened anew.
    int n = ::poll(fds.data(), fds.size(), master_hung_up ? 250 : -1);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) {
      master_hung_up = false;
      continue;
    }
    if (fds[0].revents || !pidfd) {
      pid_t got = ::waitpid(pid1, &status, pidfd ? WNOHANG : 0);
      if (got == pid1) break;
    }
    if (fds[1].revents & POLLIN) {
      relay.drain_once();
    } else if (fds[1].revents & (POLLHUP | POLLERR)) {
      if (!relay.drain_once()) master_hung_up = true;
    }
    if (fds[2].revents & POLLIN) {
      int c = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c >= 0) relay.clients.emplace_back(c);
    }
    // From the end: removing a client does not move the ones still to look at.
    for (size_t i = fds.size(); i-- > 3;) {
      const size_t k = i - 3;
      if (k >= relay.clients.size()) continue;
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) && !relay.from_client(k))
        relay.clients.erase(relay.clients.begin() + static_cast<long>(k));
    }
  }
  // The job has ended (its PID namespace with it): what it wrote last is still in the master.
  while (r.master >= 0) {
    pollfd p{r.master, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0 || !relay.drain_once()) break;
  }
  listener.reset();
  ::unlink(r.socket_path.c_str());
  return status;
}

std::vector<unsigned char> parse_detach_keys(const std::string& spec) {
  std::vector<unsigned char> keys;
  if (spec.empty()) return keys;
  size_t start = 0;
  for (;;) {
    size_t comma = spec.find(',', start);
    std::string key = spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (key.size() == 1) {
      keys.push_back(static_cast<unsigned char>(key[0]));
    } else if (key.size() == 6 && key.rfind("ctrl-", 0) == 0 &&
               ((key[5] >= 'a' && key[5] <= 'z') || std::strchr("@[\\]^_", key[5]))) {
      keys.push_back(static_cast<unsigned char>((key[5] >= 'a' && key[5] <= 'z' ? key[5] - 'a' + 'A' : key[5]) & 0x1f));
    } else {
      throw UsageError(fmt::format("--detach-keys: '{}' is not a key: give one character or ctrl-X (X a letter or one "
                                   "of @[\\]^_), separated by commas, e.g. ctrl-p,ctrl-q",
                                   key));
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return keys;
}

UniqueFd connect_console(const fs::path& root, const std::string& name) {
  StateStore store(root);
  pb::ContainerState state = store.load(name);
  if (!has_attach_socket(state.config())) {
    fail("container {} has no terminal nor open stdin (it was started without -t, and without -d -i): its output is "
         "in 'stasis logs {}'",
         name, name);
  }
  if (state.status() != "running" || !container_alive(state)) fail("container {} is not running", name);
  const fs::path path = attach_socket_path(root, name);
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) fail_errno(errno, "socket");
  UniqueFd dir;
  sockaddr_un addr = socket_address(path, dir);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    fail_errno(errno, "attach to container {}: connect to its monitor at {}", name, path.string());
  }
  return fd;
}

namespace {

// Our terminal in raw mode while attached: every key goes to the job, whose own terminal
// does the echo and the line editing.
class RawMode {
 public:
  explicit RawMode(int fd) : fd_(fd) {
    if (::tcgetattr(fd, &saved_) < 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(fd, TCSANOW, &raw) == 0;
  }
  ~RawMode() {
    if (active_) ::tcsetattr(fd_, TCSADRAIN, &saved_);
  }
  RawMode(const RawMode&) = delete;
  RawMode& operator=(const RawMode&) = delete;

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

void send_window_size(int connection) {
  winsize ws{};
  if (::ioctl(0, TIOCGWINSZ, &ws) < 0 && ::ioctl(1, TIOCGWINSZ, &ws) < 0) return;
  if (ws.ws_row == 0 || ws.ws_col == 0) return;  // a terminal that does not know its size: keep the job's
  char msg[1 + sizeof ws];
  msg[0] = 'W';
  std::memcpy(msg + 1, &ws, sizeof ws);
  send_message(connection, msg, sizeof msg);
}

}  // namespace

AttachEnd attach_console(int connection, const std::vector<unsigned char>& detach_keys, bool send_input,
                         const std::string& follow_log) {
  const bool tty = follow_log.empty();
  std::optional<RawMode> raw;
  if (tty && send_input && ::isatty(0)) raw.emplace(0);
  UniqueFd log;
  if (!tty) {
    log.reset(::open(follow_log.c_str(), O_RDONLY | O_CLOEXEC));
    if (log) ::lseek(log.get(), 0, SEEK_END);  // from now on, as for a terminal
  }
  auto copy_log = [&] {
    char buf[kChunk];
    ssize_t n;
    while (log && (n = ::read(log.get(), buf, sizeof buf)) > 0) {
      try {
        write_all(1, std::as_bytes(std::span(buf, static_cast<size_t>(n))), "stdout");
      } catch (const Error&) {
        return;
      }
    }
  };
  sigset_t winch, old;
  sigemptyset(&winch);
  sigaddset(&winch, SIGWINCH);
  if (!tty) sigaddset(&winch, SIGINT);  // without a terminal of the job's, ctrl-c detaches
  ::sigprocmask(SIG_BLOCK, &winch, &old);
  UniqueFd resized(::signalfd(-1, &winch, SFD_CLOEXEC | SFD_NONBLOCK));
  struct RestoreMask {
    sigset_t set;
    ~RestoreMask() { ::sigprocmask(SIG_SETMASK, &set, nullptr); }
  } restore_mask{old};
  send_window_size(connection);

  bool input_open = send_input;
  size_t matched = 0;  // how much of detach_keys was just typed (held back until it is clear)
  std::string out;
  auto send_typed = [&] {
    if (out.empty()) return;
    for (size_t at = 0; at < out.size(); at += kChunk) {
      char msg[1 + kChunk];
      msg[0] = 'D';
      const size_t len = std::min(kChunk, out.size() - at);
      std::memcpy(msg + 1, out.data() + at, len);
      if (!send_message(connection, msg, 1 + len)) input_open = false;
    }
    out.clear();
  };
  for (;;) {
    pollfd fds[3] = {{connection, POLLIN, 0}, {input_open ? 0 : -1, POLLIN, 0}, {resized.get(), POLLIN, 0}};
    if (::poll(fds, 3, tty ? -1 : 100) < 0) {
      if (errno == EINTR) continue;
      fail_errno(errno, "attach: poll");
    }
    copy_log();
    if (fds[0].revents) {
      char buf[kChunk + 1];
      ssize_t n = ::recv(connection, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        copy_log();  // the job's last words
        return AttachEnd::Ended;
      }
      if (n > 0) {
        try {
          write_all(1, std::as_bytes(std::span(buf, static_cast<size_t>(n))), "stdout");
        } catch (const Error&) {
          return AttachEnd::Ended;  // nobody reads us
        }
      }
    }
    if (fds[1].revents) {
      unsigned char buf[kChunk];
      ssize_t n = ::read(0, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        input_open = false;  // the job's output still comes, until it ends or we are detached
        const char eof = 'E';
        send_message(connection, &eof, 1);
      }
      for (ssize_t i = 0; i < n; ++i) {
        const unsigned char c = buf[i];
        if (!detach_keys.empty() && c == detach_keys[matched]) {
          if (++matched == detach_keys.size()) {
            send_typed();
            return AttachEnd::Detached;
          }
          continue;
        }
        // Not the sequence after all: what was held back goes to the job, then this key.
        out.append(detach_keys.begin(), detach_keys.begin() + static_cast<long>(matched));
        matched = 0;
        if (!detach_keys.empty() && c == detach_keys[0]) {
          matched = 1;
          continue;
        }
        out.push_back(static_cast<char>(c));
      }
      send_typed();
    }
    if (fds[2].revents) {
      signalfd_siginfo info;
      bool interrupted = false;
      while (::read(resized.get(), &info, sizeof info) > 0) interrupted |= info.ssi_signo == SIGINT;
      if (interrupted) return AttachEnd::Detached;
      if (tty) send_window_size(connection);
    }
  }
}

}  // namespace stasis::launcher
