// Putting bytes back into the queues of a pty pair, as they were: what the slave had not read
// yet is written into the master with the slave's settings made to take it as it comes (no
// echo, no signal or editing keys, no input translation; canonical mode kept, so that its lines
// end where they ended), and what the master had not read is written into the slave without
// output processing. The settings are put back right after (dump: the job is frozen meanwhile;
// restore: before the job runs). Used by dump/terminals.cc and restore/terminals.cc.
#pragma once

#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>

#include <string>

namespace stasis {

inline termios settings_to_put_back_input(termios t) {
  t.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHOE | ECHOK | ECHONL | ECHOCTL | ECHOKE | ISIG | IEXTEN);
  t.c_iflag &= ~static_cast<tcflag_t>(ICRNL | INLCR | IGNCR | ISTRIP | IUCLC | IXON | IXOFF | PARMRK | INPCK);
  for (int c : {VERASE, VKILL, VEOF}) t.c_cc[c] = _POSIX_VDISABLE;  // the bytes are data, not edits
  return t;
}

// Bytes written into a master reach the slave's line discipline a moment later (a kernel work
// item), and are processed with the settings of that moment: wait until they are in before
// the settings are put back. A poll of the slave with no input yet runs that work at once;
// then what `data` makes readable (up to its last line end in canonical mode) must be there
// (bounded: 200 ms).
inline void wait_until_input_taken(int slave, const termios& t, const std::string& data) {
  pollfd p{slave, POLLIN, 0};
  ::poll(&p, 1, 0);
  size_t readable = data.size();
  if (t.c_lflag & ICANON) {
    readable = 0;
    for (size_t i = 0; i < data.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(data[i]);
      if (c == '\n' || (c != _POSIX_VDISABLE && (c == t.c_cc[VEOL] || c == t.c_cc[VEOL2]))) readable = i + 1;
    }
  }
  for (int k = 0; k < 200; ++k) {
    int n = 0;
    if (::ioctl(slave, FIONREAD, &n) < 0 || static_cast<size_t>(n) >= readable) return;
    timespec ms{0, 1000000};
    ::nanosleep(&ms, nullptr);
  }
}

// Puts data into the input queue of tty (a terminal we hold, not necessarily our controlling
// one: CAP_SYS_ADMIN) as if typed, synchronously (TIOCSTI hands each byte to the line
// discipline at once), with the settings that take it as it comes, then settings back.
// Returns false (errno set) when the kernel refuses.
inline bool put_back_input_as_typed(int tty, const termios& settings, const std::string& data) {
  const termios putting = settings_to_put_back_input(settings);
  if (::tcsetattr(tty, TCSANOW, &putting) < 0) return false;
  bool ok = true;
  for (char c : data) {
    if (::ioctl(tty, TIOCSTI, &c) < 0) {
      ok = false;
      break;
    }
  }
  const int err = errno;
  ::tcsetattr(tty, TCSANOW, &settings);
  errno = err;
  return ok;
}

inline termios settings_to_put_back_output(termios t) {
  t.c_oflag &= ~static_cast<tcflag_t>(OPOST);
  return t;
}

}  // namespace stasis
