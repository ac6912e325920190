#include "dump/terminals.h"

#include <cstdio>
#include <sstream>

#include "common/error.h"
#include "common/file_util.h"
#include "common/proc.h"

namespace stasis::dump {

namespace {

// What would let the user checkpoint the job: its stdio and its session away from the terminal.
constexpr const char* kDetachHint =
    "start the program in a session of its own with its standard streams away from the terminal "
    "(for example `setsid PROGRAM </dev/null >PROGRAM.log 2>&1 &`), or under `stasis run`";

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
  throw UnsupportedError(fmt::format("pid {} fd {}: {} is a terminal ({}), and terminals cannot be checkpointed; "
                                     "{}",
                                     pid, fd, link, kind, help));
}

void TerminalCheck::refuse_controlling_terminal(pid_t pid) {
  const int tty = proc::read_stat(pid).tty_nr;
  if (tty == 0) return;
  // The kernel's encoding of a device number in /proc/PID/stat.
  const unsigned major = (static_cast<unsigned>(tty) >> 8) & 0xfff;
  const unsigned minor = (static_cast<unsigned>(tty) & 0xff) | ((static_cast<unsigned>(tty) >> 12) & 0xfff00);
  const Driver* d = find(major, minor);
  std::string name = fmt::format("terminal device {}:{}", major, minor);
  if (d && d->type == "pty:slave") name = fmt::format("/dev/pts/{}", minor);
  else if (d && d->first == d->last) name = d->path;
  throw UnsupportedError(fmt::format("pid {}: it has a controlling terminal ({}), and a process attached to a "
                                     "terminal cannot be checkpointed; to checkpoint it, {}",
                                     pid, name, kDetachHint));
}

}  // namespace stasis::dump
