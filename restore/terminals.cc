#include "restore/terminals.h"

#include <signal.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "common/fd_passing.h"
#include "common/file_util.h"
#include "common/pty_queues.h"
#include "files.pb.h"
#include "images/image_file.h"
#include "launcher/console.h"

namespace stasis::restore {

void load_ttys(const images::Checkpoint& checkpoint, std::optional<pb::TtyState>& console,
               std::map<uint64_t, pb::TtyState>& ptys) {
  using images::ImageType;
  if (!checkpoint.exists(ImageType::Ttys)) return;
  for (auto& tty : images::read_all<pb::TtyState>(checkpoint.path(ImageType::Ttys), ImageType::Ttys)) {
    if (tty.console()) console = std::move(tty);
    else ptys[tty.id()] = std::move(tty);
  }
}

namespace {

// Termios and window size of a pair through fd, its slave or its master (whose terminal
// ioctls act on the slave side).
void apply_settings(const pb::TtyState& state, int fd, const std::string& what) {
  const pb::Termios& d = state.termios();
  termios t{};
  if (::tcgetattr(fd, &t) < 0) fail_errno(errno, "{}: tcgetattr", what);
  t.c_iflag = d.iflag();
  t.c_oflag = d.oflag();
  t.c_cflag = d.cflag();
  t.c_lflag = d.lflag();
  t.c_line = static_cast<cc_t>(d.line());
  std::memcpy(t.c_cc, d.cc().data(), std::min(d.cc().size(), sizeof t.c_cc));
  ::cfsetispeed(&t, static_cast<speed_t>(d.ispeed()));
  ::cfsetospeed(&t, static_cast<speed_t>(d.ospeed()));
  if (::tcsetattr(fd, TCSANOW, &t) < 0) fail_errno(errno, "{}: restore its settings (tcsetattr)", what);
  const pb::WindowSize& w = state.window();
  winsize ws{static_cast<unsigned short>(w.rows()), static_cast<unsigned short>(w.cols()),
             static_cast<unsigned short>(w.xpixel()), static_cast<unsigned short>(w.ypixel())};
  // The console: an attached client sets its own size when it connects; until then, the dumped one.
  if (ws.ws_row != 0 && ::ioctl(fd, TIOCSWINSZ, &ws) < 0) fail_errno(errno, "{}: restore its window size", what);
}

// A new pair's master from ptmx, with index `wanted` when it is free. Devpts gives the lowest
// free index: the free ones below are held meanwhile, so that the pair gets it back when no
// other terminal has it (else it gets another).
UniqueFd open_master_at(const std::string& ptmx, unsigned wanted, const std::string& what) {
  std::vector<UniqueFd> below;
  for (int attempt = 0; attempt < 1024; ++attempt) {
    UniqueFd m(::open(ptmx.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!m) fail_errno(errno, "{}: open {}", what, ptmx);
    unsigned index = 0;
    if (::ioctl(m.get(), TIOCGPTN, &index) < 0) fail_errno(errno, "{}: TIOCGPTN", what);
    if (index >= wanted) return m;
    below.push_back(std::move(m));
  }
  fail("{}: no free index at or above {} in {}", what, wanted, ptmx);
}

}  // namespace

void make_terminal_for_client(const pb::TtyState& console, const std::string& ptmx, int slave_fd, int socket) {
  const std::string what = fmt::format("the job's terminal (pty {} of {})", console.index(), ptmx);
  UniqueFd master = open_master_at(ptmx, console.index(), what);
  int zero = 0;
  if (::ioctl(master.get(), TIOCSPTLCK, &zero) < 0) fail_errno(errno, "{}: unlock", what);
  UniqueFd slave(::ioctl(master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!slave) fail_errno(errno, "{}: open its slave", what);
  if (::dup3(slave.get(), slave_fd, O_CLOEXEC) < 0) fail_errno(errno, "{}: move its slave to fd {}", what, slave_fd);
  const char byte = 0;
  send_with_fd(socket, std::span(&byte, 1), master.get(), what + ": hand its master to the restorer");
}

UniqueFd receive_terminal_master(int socket) {
  char byte;
  UniqueFd master = receive_with_fd(socket, std::span(&byte, 1), MSG_DONTWAIT, nullptr,
                                    "receive the master of the job's new terminal from its PID 1");
  if (!master) fail("PID 1 of the restored job sent no terminal master");
  return master;
}

void PtyFactory::finish() {
  for (auto& [key, pair] : pairs_) {
    const pb::TtyState& m = *pair.state;
    const std::string what = fmt::format("pty {}", m.index());
    termios saved{};
    if (::tcgetattr(pair.master.get(), &saved) < 0) fail_errno(errno, "{}: tcgetattr", what);
    if (!m.output().empty() || !m.input().empty()) {
      // Through a slave of our own (the pair is unlocked until the end of this).
      UniqueFd slave(::ioctl(pair.master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
      if (!slave) fail_errno(errno, "{}: open its slave to put back the bytes that waited in it", what);
      auto put = [&](int fd, const termios& settings, const std::string& data) {
        if (::tcsetattr(pair.master.get(), TCSANOW, &settings) < 0) fail_errno(errno, "{}: tcsetattr", what);
        write_all(fd, std::as_bytes(std::span(data.data(), data.size())), what);
        if (fd == pair.master.get()) wait_until_input_taken(slave.get(), settings, data);
        if (::tcsetattr(pair.master.get(), TCSANOW, &saved) < 0) fail_errno(errno, "{}: tcsetattr", what);
      };
      if (!m.output().empty()) put(slave.get(), settings_to_put_back_output(saved), m.output());
      if (!m.input().empty()) put(pair.master.get(), settings_to_put_back_input(saved), m.input());
    }
    int one = 1;
    if (m.locked() && ::ioctl(pair.master.get(), TIOCSPTLCK, &one) < 0) fail_errno(errno, "{}: lock it again", what);
  }
}

PtyFactory::Pair& PtyFactory::pair_for(const pb::TtyState& end) {
  const auto key = std::make_pair(end.pair_dev(), end.index());
  auto made = pairs_.find(key);
  if (made != pairs_.end()) return made->second;
  const pb::TtyState* master = nullptr;
  for (const auto& [id, t] : ptys_)
    if (t.master() && t.pair_dev() == end.pair_dev() && t.index() == end.index()) master = &t;
  if (!master) fail("pty {}: ttys.img has no master for it", end.index());
  UniqueFd fd = open_master_at(master->path(), master->index(), fmt::format("pty {}", master->index()));
  UniqueFd high(::fcntl(fd.get(), F_DUPFD_CLOEXEC, min_fd_));
  if (!high) fail_errno(errno, "pty {}: move its master above fd {}", master->index(), min_fd_);
  const std::string what = fmt::format("pty {}", master->index());
  int zero = 0, packet = master->packet_mode() ? 1 : 0;
  if (::ioctl(high.get(), TIOCSPTLCK, &zero) < 0) fail_errno(errno, "{}: unlock", what);
  apply_settings(*master, high.get(), what);
  if (::ioctl(high.get(), TIOCPKT, &packet) < 0) fail_errno(errno, "{}: set packet mode", what);
  Pair& pair = pairs_[key];
  pair.master = std::move(high);
  pair.state = master;
  return pair;
}

UniqueFd PtyFactory::open(uint64_t id) {
  auto it = ptys_.find(id);
  if (it == ptys_.end()) fail("ttys.img has no pty end {}", id);
  const pb::TtyState& end = it->second;
  Pair& pair = pair_for(end);
  const int status_flags = static_cast<int>(end.flags()) & (O_NONBLOCK | O_APPEND | O_ASYNC);
  if (end.master()) {
    // One master per pair: the factory's copy is the same open file description.
    UniqueFd fd(::fcntl(pair.master.get(), F_DUPFD_CLOEXEC, min_fd_));
    if (!fd || ::fcntl(fd.get(), F_SETFL, status_flags) < 0) fail_errno(errno, "pty {}: its master", end.index());
    return fd;
  }
  const int flags = (static_cast<int>(end.flags()) & (O_ACCMODE | O_NONBLOCK)) | O_NOCTTY | O_CLOEXEC;
  UniqueFd slave(::ioctl(pair.master.get(), TIOCGPTPEER, flags));
  if (!slave) fail_errno(errno, "pty {}: open its slave", end.index());
  UniqueFd high(::fcntl(slave.get(), F_DUPFD_CLOEXEC, min_fd_));
  if (!high) fail_errno(errno, "pty {}: move its slave above fd {}", end.index(), min_fd_);
  return high;
}

namespace {

// Makes group fg the foreground one of the terminal at fd, our controlling terminal, once it
// exists (up to 10 s: the stub of its leader makes it while we get here).
void set_foreground(int fd, pid_t fg, const std::string& what) {
  for (int i = 0; ::getpgid(fg) != fg; ++i) {
    if (i == 10000) fail("{}: its foreground process group {} was not made within 10 s", what, fg);
    ::usleep(1000);
  }
  sigset_t ttou, old;
  sigemptyset(&ttou);
  sigaddset(&ttou, SIGTTOU);
  ::sigprocmask(SIG_BLOCK, &ttou, &old);
  const int rc = ::tcsetpgrp(fd, fg);
  const int err = errno;
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  if (rc < 0) fail_errno(err, "{}: make process group {} the foreground one", what, fg);
}

// The slot fd of an end of the pair leader's session has as controlling terminal (a slave
// if there is one), its record, or -1.
std::pair<int, const pb::TtyState*> controlling_pty_slot(pid_t leader, const std::map<uint64_t, pb::TtyState>& ptys,
                                                         const std::map<std::pair<int, uint64_t>, int>& slots) {
  std::pair<int, const pb::TtyState*> found{-1, nullptr};
  for (const auto& [id, t] : ptys) {
    if (t.console() || t.session() != leader) continue;
    auto it = slots.find({static_cast<int>(pb::FdEntry::TTY), id});
    if (it == slots.end()) continue;
    if (!found.second || (found.second->master() && !t.master())) found = {it->second, &t};
  }
  return found;
}

}  // namespace

void take_controlling_pty(pid_t leader, const std::map<uint64_t, pb::TtyState>& ptys,
                          const std::map<std::pair<int, uint64_t>, int>& slots) {
  const bool leads = std::any_of(ptys.begin(), ptys.end(), [&](const auto& p) { return p.second.session() == leader; });
  if (!leads) return;
  auto [fd, end] = controlling_pty_slot(leader, ptys, slots);
  if (!end) fail("pty: the controlling terminal of session {} was not made before its processes", leader);
  const std::string what = fmt::format("pty {} (the controlling terminal of session {})", end->index(), leader);
  UniqueFd peer;
  if (end->master()) {
    // Only the master is the job's: a slave of our own for the while (the terminal stays ours).
    peer.reset(::ioctl(fd, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!peer) fail_errno(errno, "{}: open its slave", what);
    fd = peer.get();
  }
  if (::ioctl(fd, TIOCSCTTY, 0) < 0) fail_errno(errno, "{}: make it the session's controlling terminal (TIOCSCTTY)", what);
}

void restore_pty_foreground(pid_t leader, const std::map<uint64_t, pb::TtyState>& ptys,
                            const std::map<std::pair<int, uint64_t>, int>& slots) {
  auto [fd, end] = controlling_pty_slot(leader, ptys, slots);
  if (!end || end->foreground_pgrp() <= 0 || end->foreground_pgrp() == ::getpgrp()) return;
  // Through any fd of the pair: the master's terminal ioctls act on the slave side too, but
  // tcsetpgrp wants the controlling terminal itself: a slave.
  UniqueFd peer;
  if (end->master()) {
    peer.reset(::ioctl(fd, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!peer) fail_errno(errno, "pty {}: open its slave", end->index());
    fd = peer.get();
  }
  set_foreground(fd, end->foreground_pgrp(),
                 fmt::format("pty {} (the controlling terminal of session {})", end->index(), leader));
}

void restore_console(const pb::TtyState& console, int slave, bool tree_has_group) {
  apply_settings(console, slave, "terminal");
  if (!console.input().empty()) {
    // Type-ahead the job had not read: typed again (the stub is root, the terminal its own).
    termios settings{};
    if (::tcgetattr(slave, &settings) < 0 || !put_back_input_as_typed(slave, settings, console.input()))
      fail_errno(errno, "terminal: type again the {} bytes the job had not read", console.input().size());
  }
  // Our own group is the foreground one already (the launcher made the terminal ours); another
  // group of the session once its leader's stub has made it (a child of ours, a grandchild:
  // they run beside us).
  const pid_t fg = console.foreground_pgrp();
  if (fg > 0 && fg != ::getpgrp() && (tree_has_group || ::getpgid(fg) == fg)) set_foreground(slave, fg, "terminal");
}

bool attach_restored_console(const launcher::StartedContainer& started, bool interactive) {
  if (!started.console) return false;
  const auto keys = launcher::parse_detach_keys(launcher::kDefaultDetachKeys);
  if (launcher::attach_console(started.console->get(), keys, interactive) != launcher::AttachEnd::Detached) return false;
  std::fprintf(stderr, "\nstasis: detached from %s (it runs on: 'stasis attach %s')\n", started.name.c_str(),
               started.name.c_str());
  return true;
}

}  // namespace stasis::restore
