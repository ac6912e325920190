#include "restore/terminals.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "images/image_file.h"
#include "launcher/console.h"

namespace stasis::restore {

std::optional<pb::TtyState> load_console(const images::Checkpoint& checkpoint) {
  using images::ImageType;
  if (!checkpoint.exists(ImageType::Ttys)) return std::nullopt;
  for (auto& tty : images::read_all<pb::TtyState>(checkpoint.path(ImageType::Ttys), ImageType::Ttys))
    if (tty.console()) return std::move(tty);
  return std::nullopt;
}

void restore_console(const pb::TtyState& console, int slave) {
  const pb::Termios& d = console.termios();
  termios t{};
  if (::tcgetattr(slave, &t) < 0) fail_errno(errno, "terminal: tcgetattr on the new terminal");
  t.c_iflag = d.iflag();
  t.c_oflag = d.oflag();
  t.c_cflag = d.cflag();
  t.c_lflag = d.lflag();
  t.c_line = static_cast<cc_t>(d.line());
  std::memcpy(t.c_cc, d.cc().data(), std::min(d.cc().size(), sizeof t.c_cc));
  ::cfsetispeed(&t, static_cast<speed_t>(d.ispeed()));
  ::cfsetospeed(&t, static_cast<speed_t>(d.ospeed()));
  if (::tcsetattr(slave, TCSANOW, &t) < 0) fail_errno(errno, "terminal: restore its settings (tcsetattr)");
  const pb::WindowSize& w = console.window();
  winsize ws{static_cast<unsigned short>(w.rows()), static_cast<unsigned short>(w.cols()),
             static_cast<unsigned short>(w.xpixel()), static_cast<unsigned short>(w.ypixel())};
  // An attached client sets its own size when it connects; until then, the dumped one.
  if (ws.ws_row != 0 && ::ioctl(slave, TIOCSWINSZ, &ws) < 0) fail_errno(errno, "terminal: restore its window size");
  // Our own group is the foreground one already (the launcher made the terminal ours); another
  // group of the session can only be made so once its processes exist.
  const pid_t fg = console.foreground_pgrp();
  if (fg > 0 && fg != ::getpgrp() && ::getpgid(fg) == fg) {
    sigset_t ttou, old;
    sigemptyset(&ttou);
    sigaddset(&ttou, SIGTTOU);
    ::sigprocmask(SIG_BLOCK, &ttou, &old);
    const int rc = ::tcsetpgrp(slave, fg);
    const int err = errno;
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    if (rc < 0) fail_errno(err, "terminal: make process group {} the foreground one", fg);
  }
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
