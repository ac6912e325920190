// Terminals of the job (ttys.img, dump/terminals.h). The container's -t terminal comes back
// as the new pty pair the restored container's monitor holds: its slave is already the stub's
// stdio and controlling terminal (launcher/console.h); here it gets the dumped settings,
// window size and foreground process group.
#pragma once

#include <optional>

#include "images/checkpoint.h"
#include "launcher/container.h"
#include "tty.pb.h"

namespace stasis::restore {

// The console's record of ttys.img, if the job had one.
std::optional<pb::TtyState> load_console(const images::Checkpoint& checkpoint);

// In the stub, with slave its copy of the new terminal (its stdio): termios, window size and,
// when that group exists already, the foreground process group. Throws Error.
void restore_console(const pb::TtyState& console, int slave);

// A foreground restore of a -t job: our terminal is the job's, as for `stasis run -t`, until
// the job ends (false) or the user detaches with ctrl-p ctrl-q (true).
bool attach_restored_console(const launcher::StartedContainer& started, bool interactive);

}  // namespace stasis::restore
