// Terminals of the job (ttys.img, dump/terminals.h). The container's -t terminal comes back
// as the new pty pair the restored container's monitor holds: its slave is already the stub's
// stdio and controlling terminal (launcher/console.h); here it gets the dumped settings,
// window size and foreground process group.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/fd.h"

#include "images/checkpoint.h"
#include "launcher/container.h"
#include "tty.pb.h"

namespace stasis::restore {

// ttys.img: the console's record, if the job had one, and the pty ends by open-file id.
void load_ttys(const images::Checkpoint& checkpoint, std::optional<pb::TtyState>& console,
               std::map<uint64_t, pb::TtyState>& ptys);

// Pty pairs of the job (FdEntry kind TTY), made anew in the stub (in the job's mount
// namespace and root): each from the ptmx its master came from, with the dumped index when it
// is free (lower free indexes are held meanwhile), its settings, window size and packet mode;
// slaves are opened through the master (TIOCGPTPEER), one open file description per id.
class PtyFactory {
 public:
  // The factory's own fds live at or above min_fd, clear of the fd numbers being installed.
  PtyFactory(const std::map<uint64_t, pb::TtyState>& ptys, int min_fd) : ptys_(ptys), min_fd_(min_fd) {}
  // Once every fd is installed: puts the bytes that waited in each pair back in its queues,
  // and locks again the pairs that were locked at the dump (their slaves are open by then).
  void finish();
  PtyFactory(const PtyFactory&) = delete;
  PtyFactory& operator=(const PtyFactory&) = delete;
  UniqueFd open(uint64_t id);

 private:
  struct Pair {
    UniqueFd master;
    const pb::TtyState* state = nullptr;  // its master's record
  };
  Pair& pair_for(const pb::TtyState& end);

  const std::map<uint64_t, pb::TtyState>& ptys_;
  int min_fd_;
  std::map<std::pair<uint64_t, uint32_t>, Pair> pairs_;  // (pair_dev, index) -> the new pair
};

// A restore for runc of a job whose terminal was made outside it (its console: runc's for a
// `terminal: true` container): in PID 1's stub, as its mounts are made, a new pair from ptmx
// (the job's own devpts, where the dumped terminal lay; its index again when free, so that
// runc's bind of it at /dev/console finds it). The slave goes to slave_fd (the stub's copy of
// fd 0, which the job's fds on its terminal come from); the master goes to the restorer
// through socket (SCM_RIGHTS), which hands it to runc. Throws Error.
void make_terminal_for_client(const pb::TtyState& console, const std::string& ptmx, int slave_fd, int socket);
// In the restorer, once PID 1 has reported: that master. Throws Error when none came.
UniqueFd receive_terminal_master(int socket);

// In the stub, with slave its copy of the new terminal (its stdio): termios, window size and
// the foreground process group (waited for when it is tree_has_group: its leader's stub
// makes it concurrently). Throws Error.
void restore_console(const pb::TtyState& console, int slave, bool tree_has_group);

// A pty pair of the job that is the controlling terminal of the session `leader` leads: in the
// leader's stub, once it leads its session and the pair is made (a shared file, in its slot,
// restore/tree.h), before it creates any process of its session (they inherit it). Nothing
// when leader leads no such session. `slots`: (kind, file id) -> slot fd.
void take_controlling_pty(pid_t leader, const std::map<uint64_t, pb::TtyState>& ptys,
                          const std::map<std::pair<int, uint64_t>, int>& slots);

// Later in the same stub, once its children exist: that terminal's foreground process group,
// waited for (its leader's stub makes it concurrently).
void restore_pty_foreground(pid_t leader, const std::map<uint64_t, pb::TtyState>& ptys,
                            const std::map<std::pair<int, uint64_t>, int>& slots);

// A foreground restore of a -t job: our terminal is the job's, as for `stasis run -t`, until
// the job ends (false) or the user detaches with ctrl-p ctrl-q (true).
bool attach_restored_console(const launcher::StartedContainer& started, bool interactive);

}  // namespace stasis::restore
