#include "dump/terminals.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "common/compat.h"
#include "common/error.h"
#include "common/fd.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/pty_queues.h"
#include "images/image_file.h"

namespace stasis::dump {

namespace {

// What would let the user checkpoint the job: its stdio and its session away from the terminal.
constexpr const char* kDetachHint =
    "start the program in a session of its own with its standard streams away from the terminal "
    "(for example `setsid PROGRAM </dev/null >PROGRAM.log 2>&1 &`), or under `stasis run`; or, for a process "
    "on the terminal of the shell it was started from, dump it with --shell-job (it comes back on a new terminal)";

std::string describe(const std::string& type) {
  if (type == "pty:slave") return "pty slave";
  if (type == "pty:master" || type == "system") return "pty master";
  if (type == "system:/dev/tty") return "the controlling terminal's alias /dev/tty";
  if (type == "system:console") return "the system console";
  if (type == "system:vtmaster" || type == "console") return "virtual terminal";
  if (type == "serial") return "serial terminal";
  return "terminal (" + type + ")";
}

}  // namespace

const TerminalCheck::Driver* TerminalCheck::find(unsigned major, unsigned minor) {
  if (!loaded_) {
    loaded_ = true;
    // "pty_slave            /dev/pts      136 0-1048575 pty:slave"; where /proc has no tty
    // folder, the drivers every kernel has.
    std::string text;
    try {
      text = read_file("/proc/tty/drivers");
    } catch (const Error&) {
      text = "/dev/tty /dev/tty 5 0 system:/dev/tty\n/dev/console /dev/console 5 1 system:console\n"
             "/dev/ptmx /dev/ptmx 5 2 system\n/dev/vc/0 /dev/vc/0 4 0 system:vtmaster\n"
             "unknown /dev/tty 4 1-63 console\nserial /dev/ttyS 4 64-255 serial\n"
             "pty_slave /dev/pts 136 0-1048575 pty:slave\npty_master /dev/ptm 128 0-1048575 pty:master\n";
    }
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      Driver d;
      std::string range;
      if (!(fields >> d.name >> d.path >> d.major >> range >> d.type)) continue;
      unsigned first = 0, last = 0;
      const int got = std::sscanf(range.c_str(), "%u-%u", &first, &last);
      if (got < 1) continue;
      d.first = first;
      d.last = got == 2 ? last : first;
      drivers_.push_back(std::move(d));
    }
  }
  for (const Driver& d : drivers_)
    if (d.major == major && minor >= d.first && minor <= d.last) return &d;
  return nullptr;
}

std::optional<std::string> TerminalCheck::kind(unsigned major, unsigned minor) {
  const Driver* d = find(major, minor);
  if (!d) return std::nullopt;
  return describe(d->type);
}

void TerminalCheck::refuse_fd(pid_t pid, int fd, const std::string& link, const std::string& kind) {
  std::string help = fd <= 2 ? std::string("to checkpoint it, ") + kDetachHint
                             : "a job can be checkpointed once it has closed its terminals";
  throw UnsupportedError(fmt::format("pid {} fd {}: {} is a terminal ({}), and such a terminal cannot be "
                                     "checkpointed; {}",
                                     pid, fd, link, kind, help));
}

namespace {

// Unix98 pty slaves: majors 136 to 143, the pty's index spread over major and minor.
bool is_pty_slave_device(dev_t rdev) { return ::major(rdev) >= 136 && ::major(rdev) <= 143; }
unsigned pty_index(dev_t rdev) { return ::minor(rdev) + ((::major(rdev) - 136) << 8); }
dev_t pty_slave_device(unsigned index) { return makedev(136 + (index >> 8), index & 0xff); }

// The kernel's encoding of a device number in /proc/PID/stat (tty_nr).
dev_t stat_tty_device(int tty) {
  const unsigned major = (static_cast<unsigned>(tty) >> 8) & 0xfff;
  const unsigned minor = (static_cast<unsigned>(tty) & 0xff) | ((static_cast<unsigned>(tty) >> 12) & 0xfff00);
  return makedev(major, minor);
}

// host_pid as the job's PID namespace numbers it (the last of NSpid), or 0 when it is gone.
pid_t pid_in_job(pid_t host_pid) {
  if (host_pid <= 0) return 0;
  try {
    auto status = proc::read_status(host_pid);
    return status.ns_pid.empty() ? 0 : status.ns_pid.back();
  } catch (const Error&) {
    return 0;
  }
}

}  // namespace

void TerminalCheck::set_console(const std::string& path) {
  if (path.empty()) return;
  struct stat st {};
  // O_NOCTTY: we must not become its session's; O_NONBLOCK: nothing here waits on it.
  UniqueFd tty(::open(path.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
  if (!tty || ::fstat(tty.get(), &st) < 0) fail_errno(errno, "open the container's terminal {}", path);
  console_ = st.st_rdev;
  console_devpts_ = st.st_dev;
  // Where the job sees it (a runc console: /dev/pts/N of the container's own devpts, made
  // there again at restore); for a -t job, the host's path.
  console_state_.set_path(path.rfind("/proc/", 0) == 0 ? proc::read_link(path) : path);
  termios t{};
  winsize ws{};
  if (::tcgetattr(tty.get(), &t) < 0) fail_errno(errno, "tcgetattr on the container's terminal {}", path);
  if (::ioctl(tty.get(), TIOCGWINSZ, &ws) < 0) fail_errno(errno, "TIOCGWINSZ on the container's terminal {}", path);
  console_state_.set_console(true);
  console_state_.set_index(pty_index(st.st_rdev));
  auto* tm = console_state_.mutable_termios();
  tm->set_iflag(t.c_iflag);
  tm->set_oflag(t.c_oflag);
  tm->set_cflag(t.c_cflag);
  tm->set_lflag(t.c_lflag);
  tm->set_line(t.c_line);
  tm->set_cc(std::string(reinterpret_cast<const char*>(t.c_cc), sizeof t.c_cc));
  tm->set_ispeed(static_cast<uint32_t>(::cfgetispeed(&t)));
  tm->set_ospeed(static_cast<uint32_t>(::cfgetospeed(&t)));
  auto* w = console_state_.mutable_window();
  w->set_rows(ws.ws_row);
  w->set_cols(ws.ws_col);
  w->set_xpixel(ws.ws_xpixel);
  w->set_ypixel(ws.ws_ypixel);
  // Typed but not yet read by the job (type-ahead): a pty has no way to look at its input
  // without taking it, so it is read (canonical mode off meanwhile, so that an unfinished line
  // comes too) and typed again at once, as the restore will (the job is frozen).
  termios reading = t;
  reading.c_lflag &= ~static_cast<tcflag_t>(ICANON);
  reading.c_cc[VMIN] = 0;
  reading.c_cc[VTIME] = 0;
  if (::tcsetattr(tty.get(), TCSANOW, &reading) < 0) fail_errno(errno, "tcsetattr on the container's terminal {}", path);
  std::string typed;
  char buf[4096];
  for (ssize_t n; (n = ::read(tty.get(), buf, sizeof buf)) > 0;) typed.append(buf, static_cast<size_t>(n));
  if (!typed.empty() && !put_back_input_as_typed(tty.get(), t, typed)) {
    fail_errno(errno, "the container's terminal {}: type again the {} bytes the job had not read (TIOCSTI)", path,
               typed.size());
  }
  if (::tcsetattr(tty.get(), TCSANOW, &t) < 0) fail_errno(errno, "tcsetattr on the container's terminal {}", path);
  console_state_.set_input(std::move(typed));
}

std::string TerminalCheck::outside_terminal_of(pid_t pid, bool stdio_too) {
  const int tty = proc::read_stat(pid).tty_nr;
  if (tty == 0 && !stdio_too) return {};
  const std::vector<int> fds = proc::list_fds(pid);
  for (int fd : fds) {
    if (tty == 0 && fd > 2) continue;
    const std::string path = fmt::format("/proc/{}/fd/{}", pid, fd);
    struct stat st {};
    if (::stat(path.c_str(), &st) < 0 || !S_ISCHR(st.st_mode) || !is_pty_slave_device(st.st_rdev)) continue;
    if (tty == 0 || st.st_rdev == stat_tty_device(tty)) return path;
  }
  return {};
}

bool TerminalCheck::is_console(pid_t pid, const struct stat& st) {
  if (!console_) return false;
  // A pty of the same number in another devpts instance (the job's own) is another terminal.
  if (st.st_rdev == *console_) return !is_pty_slave_device(st.st_rdev) || st.st_dev == console_devpts_;
  if (st.st_rdev != makedev(5, 0)) return false;  // /dev/tty: the opener's controlling terminal
  const int tty = proc::read_stat(pid).tty_nr;
  return tty != 0 && stat_tty_device(tty) == *console_;
}

bool TerminalCheck::is_pty(unsigned major, unsigned minor) {
  if (major == 5 && minor == 2) return true;  // a master: what /dev/ptmx (or /dev/pts/ptmx) opened
  const Driver* d = find(major, minor);
  return d && d->type == "pty:slave";
}

void TerminalCheck::describe_pty(pid_t pid, int pidfd, int fd, const std::string& link, const struct stat& st,
                                 uint32_t flags, uint64_t id) {
  UniqueFd copy(compat::sys_pidfd_getfd(pidfd, fd, 0));
  if (!copy) fail_errno(errno, "pid {} fd {}: pidfd_getfd", pid, fd);
  pb::TtyState t;
  t.set_id(id);
  t.set_flags(flags);
  const bool master = major(st.st_rdev) == 5 && minor(st.st_rdev) == 2;
  t.set_master(master);
  if (master) {
    // The master's terminal ioctls act on the pair's slave side (its settings, window size).
    unsigned index = 0;
    if (::ioctl(copy.get(), TIOCGPTN, &index) < 0) fail_errno(errno, "pid {} fd {}: TIOCGPTN", pid, fd);
    t.set_index(index);
    t.set_path(link.size() >= 9 && link.compare(link.size() - 9, 9, "/pts/ptmx") == 0 ? "/dev/pts/ptmx" : "/dev/ptmx");
    // An O_PATH peer names the slave's devpts instance without opening the terminal.
    UniqueFd peer(::ioctl(copy.get(), TIOCGPTPEER, O_PATH | O_CLOEXEC));
    struct stat peer_st {};
    if (peer && ::fstat(peer.get(), &peer_st) == 0) t.set_pair_dev(peer_st.st_dev);
    termios tm{};
    winsize ws{};
    int locked = 0, packet = 0;
    if (::tcgetattr(copy.get(), &tm) < 0 || ::ioctl(copy.get(), TIOCGWINSZ, &ws) < 0 ||
        ::ioctl(copy.get(), TIOCGPTLCK, &locked) < 0 || ::ioctl(copy.get(), TIOCGPKT, &packet) < 0) {
      fail_errno(errno, "pid {} fd {}: read the settings of pty {}", pid, fd, index);
    }
    auto* d = t.mutable_termios();
    d->set_iflag(tm.c_iflag);
    d->set_oflag(tm.c_oflag);
    d->set_cflag(tm.c_cflag);
    d->set_lflag(tm.c_lflag);
    d->set_line(tm.c_line);
    d->set_cc(std::string(reinterpret_cast<const char*>(tm.c_cc), sizeof tm.c_cc));
    d->set_ispeed(static_cast<uint32_t>(::cfgetispeed(&tm)));
    d->set_ospeed(static_cast<uint32_t>(::cfgetospeed(&tm)));
    auto* w = t.mutable_window();
    w->set_rows(ws.ws_row);
    w->set_cols(ws.ws_col);
    w->set_xpixel(ws.ws_xpixel);
    w->set_ypixel(ws.ws_ypixel);
    t.set_locked(locked != 0);
    t.set_packet_mode(packet != 0);
  } else {
    t.set_index(pty_index(st.st_rdev));
    t.set_path(link);
    t.set_pair_dev(st.st_dev);
  }
  ptys_.push_back({std::move(t), pid, fd, link});
}

namespace {

UniqueFd grab(pid_t pid, int fd) {
  UniqueFd pidfd(compat::sys_pidfd_open(pid, 0));
  if (!pidfd) fail_errno(errno, "pidfd_open {}", pid);
  UniqueFd copy(compat::sys_pidfd_getfd(pidfd.get(), fd, 0));
  if (!copy) fail_errno(errno, "pid {} fd {}: pidfd_getfd", pid, fd);
  return copy;
}

// Reads exactly n bytes that are waiting (FIONREAD said so): no wait, even on a blocking
// description (which the job shares with our copy: its flags are not ours to change).
std::string read_waiting(int fd, int n, const std::string& what) {
  std::string data(static_cast<size_t>(n), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t k = ::read(fd, data.data() + got, data.size() - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) fail_errno(k < 0 ? errno : EIO, "{}: read the bytes waiting in it", what);
    got += static_cast<size_t>(k);
  }
  return data;
}

void write_back(int fd, const std::string& data, const std::string& what) {
  try {
    write_all(fd, std::as_bytes(std::span(data.data(), data.size())), what);
  } catch (const Error& e) {
    fail("{}: put back the {} bytes waiting in it: {}", what, data.size(), e.what());
  }
}

void set_settings(int master, const termios& t, const std::string& what) {
  if (::tcsetattr(master, TCSANOW, &t) < 0) fail_errno(errno, "{}: tcsetattr", what);
}

}  // namespace

void TerminalCheck::save_queues() {
  for (PtyEnd& m : ptys_) {
    if (!m.state.master()) continue;
    const PtyEnd* s = nullptr;
    for (const PtyEnd& end : ptys_)
      if (!end.state.master() && end.state.index() == m.state.index() && end.state.pair_dev() == m.state.pair_dev())
        s = &end;
    const std::string what = fmt::format("pid {} fd {} ({}, pty {})", m.pid, m.fd, m.link, m.state.index());
    UniqueFd master = grab(m.pid, m.fd);
    termios saved{};
    if (::tcgetattr(master.get(), &saved) < 0) fail_errno(errno, "{}: tcgetattr", what);
    // Written by the slave, not yet read at the master: taken (packet mode off meanwhile, so
    // that no status byte comes with them) and written again into the slave, unprocessed.
    int waiting = 0;
    if (::ioctl(master.get(), FIONREAD, &waiting) == 0 && waiting > 0) {
      if (!s) {
        throw UnsupportedError(fmt::format("{}: {} bytes written to its slave wait in it, and no slave of it is the "
                                           "job's to write them again through; checkpoint it once they have been read",
                                           what, waiting));
      }
      UniqueFd slave = grab(s->pid, s->fd);
      int off = 0, on = 1;
      if (m.state.packet_mode()) ::ioctl(master.get(), TIOCPKT, &off);
      std::string data = read_waiting(master.get(), waiting, what);
      if (m.state.packet_mode()) ::ioctl(master.get(), TIOCPKT, &on);
      set_settings(master.get(), settings_to_put_back_output(saved), what);
      write_back(slave.get(), data, what);
      set_settings(master.get(), saved, what);
      m.state.set_output(std::move(data));
    }
    // Written by the master, not yet read at the slave (a line not finished in canonical mode
    // too: canonical mode is off while it is read): taken and written again into the master.
    if (s) {
      UniqueFd slave = grab(s->pid, s->fd);
      termios reading = saved;
      reading.c_lflag &= ~static_cast<tcflag_t>(ICANON);
      reading.c_cc[VMIN] = 0;
      reading.c_cc[VTIME] = 0;
      set_settings(master.get(), reading, what);
      waiting = 0;
      std::string data;
      if (::ioctl(slave.get(), FIONREAD, &waiting) == 0 && waiting > 0) data = read_waiting(slave.get(), waiting, what);
      if (!data.empty()) {
        const termios putting = settings_to_put_back_input(saved);
        set_settings(master.get(), putting, what);
        write_back(master.get(), data, what);
        wait_until_input_taken(slave.get(), putting, data);
      }
      set_settings(master.get(), saved, what);
      m.state.set_input(std::move(data));
    }
  }
}

void TerminalCheck::check_pairs() {
  // A terminal taken as made outside the job (--shell-job) whose master the job holds is a
  // pair of the job's: as a console it would come back cut from its master.
  for (const PtyEnd& end : ptys_)
    if (console_ && end.state.master() && end.state.pair_dev() == console_devpts_ &&
        pty_slave_device(end.state.index()) == *console_)
      throw UnsupportedError(fmt::format(
          "pid {} fd {}: the job holds the master of its own terminal (pty {}), which was given as made outside "
          "the job (--shell-job); dump it without that option",
          end.pid, end.fd, end.state.index()));
  check_controlling_ptys();  // first: a pair outside the job is refused as the terminal it is
  for (const PtyEnd& end : ptys_) {
    if (end.state.master()) continue;
    const bool has_master = std::any_of(ptys_.begin(), ptys_.end(), [&](const PtyEnd& other) {
      return other.state.master() && other.state.index() == end.state.index() &&
             other.state.pair_dev() == end.state.pair_dev();
    });
    if (!has_master) refuse_fd(end.pid, end.fd, end.link, "pty slave whose master is outside the job");
  }
}

void TerminalCheck::write_images(const std::filesystem::path& dir) const {
  images::ImageWriter w(dir / images::image_file_name(images::ImageType::Ttys), images::ImageType::Ttys);
  if (console_) w.write(console_state_);
  // The masters first: restore makes each pair from its master's record.
  for (const PtyEnd& end : ptys_)
    if (end.state.master()) w.write(end.state);
  for (const PtyEnd& end : ptys_)
    if (!end.state.master()) w.write(end.state);
  w.close();
}

void TerminalCheck::refuse_controlling_terminal(pid_t pid) {
  const proc::Stat stat = proc::read_stat(pid);
  const int tty = stat.tty_nr;
  pids_.push_back(pid);
  sessions_[pid] = {stat.session, tty};
  if (tty == 0) return;
  if (console_ && stat_tty_device(tty) == *console_) {
    // The session and its foreground group, as seen by the job (a later process of the same
    // session sees the same).
    console_state_.set_session(pid_in_job(stat.session));
    console_state_.set_foreground_pgrp(pid_in_job(stat.tpgid));
    return;
  }
  const unsigned major = ::major(stat_tty_device(tty));
  const unsigned minor = ::minor(stat_tty_device(tty));
  const Driver* d = find(major, minor);
  if (d && d->type == "pty:slave") {
    // Maybe a pair of the job's (`script`, tmux): check_pairs decides once every fd is known.
    cttys_.push_back({pid, stat.session, stat.tpgid, pty_index(makedev(major, minor))});
    return;
  }
  refuse_terminal(pid, major, minor);
}

void TerminalCheck::refuse_terminal(pid_t pid, unsigned major, unsigned minor) {
  // Its terminal is a pty it holds at an fd (stdio, most often): name that fd.
  const Driver* d = find(major, minor);
  if (d && d->type == "pty:slave") {
    const unsigned index = pty_index(makedev(major, minor));
    for (const PtyEnd& end : ptys_)
      if (end.pid == pid && !end.state.master() && end.state.index() == index)
        refuse_fd(pid, end.fd, end.link, "pty slave, its controlling terminal");
  }
  std::string name = fmt::format("terminal device {}:{}", major, minor);
  if (d && d->type == "pty:slave") name = fmt::format("/dev/pts/{}", minor);
  else if (d && d->first == d->last) name = d->path;
  throw UnsupportedError(fmt::format("pid {}: it has a controlling terminal ({}), and a process attached to a "
                                     "terminal cannot be checkpointed; to checkpoint it, {}",
                                     pid, name, kDetachHint));
}

void TerminalCheck::check_controlling_ptys() {
  // Every process of the job, with its session (host pids): who else the terminal's session holds.
  for (const Ctty& c : cttys_) {
    // The pair must be the job's: a master of that index among its fds.
    const PtyEnd* master = nullptr;
    for (const PtyEnd& end : ptys_)
      if (end.state.master() && end.state.index() == c.index) master = &end;
    if (!master) refuse_terminal(c.pid, ::major(pty_slave_device(c.index)), ::minor(pty_slave_device(c.index)));
    const std::string what = fmt::format("pid {}: its controlling terminal, pty {} of the job (pid {} fd {})", c.pid,
                                         c.index, master->pid, master->fd);
    // Made again by the session's leader, before the processes of its session: it must be
    // in the job, and so must the foreground group's leader (its group exists first).
    if (std::find(pids_.begin(), pids_.end(), c.session) == pids_.end())
      throw UnsupportedError(fmt::format("{}: the leader of its session (pid {}) is not in the job, and only a session "
                                         "leader can make a terminal its session's again; not supported",
                                         what, c.session));
    if (c.foreground > 0 && std::find(pids_.begin(), pids_.end(), c.foreground) == pids_.end())
      throw UnsupportedError(fmt::format("{}: its foreground process group {} has no leader in the job; not supported",
                                         what, c.foreground));
    const pid_t session = pid_in_job(c.session), foreground = pid_in_job(c.foreground);
    for (PtyEnd& end : ptys_) {
      if (end.state.index() != c.index || end.state.pair_dev() != master->state.pair_dev()) continue;
      if (end.state.session() != 0 && end.state.session() != session)
        throw UnsupportedError(fmt::format("{}: it is also the controlling terminal of session {}", what, end.state.session()));
      end.state.set_session(session);
      end.state.set_foreground_pgrp(foreground);
    }
  }
  // A process of such a session without it (it let it go with TIOCNOTTY) would get it back.
  for (const auto& [pid, session_and_tty] : sessions_) {
    if (session_and_tty.second != 0) continue;
    for (const Ctty& c : cttys_)
      if (c.session == session_and_tty.first)
        throw UnsupportedError(fmt::format("pid {}: it has no controlling terminal while its session's is pty {} of "
                                           "the job, and would get it back at restore; not supported",
                                           pid, c.index));
  }
}

}  // namespace stasis::dump
