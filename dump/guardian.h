// The guardian: puts right what the kernel leaves behind when the dumper dies (kill -9, OOM)
// while the job's cgroup is not as the dump found it. A tracer's death detaches its tracees by
// itself (and dump/inject.h makes sure an injected thread then finds its own context again),
// but nothing thaws a cgroup we froze, nor freezes again a paused container we thawed to
// seize it. So the dumper forks this small process first; it waits on a pipe, and when the
// pipe closes without a goodbye while it is armed, it writes the freezer state the job had:
// THAWED for a running job (armed while we hold it frozen), FROZEN for a paused one (armed for
// the whole dump). It runs in a session of its own, so that signals to the dumper's process
// group (Ctrl-C, kill -- -PGID) do not take it down with the dumper.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/cgroup.h"
#include "common/fd.h"

namespace stasis::dump {

class Guardian {
 public:
  // paused: the job was frozen before the dump (armed from the start, for good).
  Guardian(const Cgroup& cgroup, bool paused);
  ~Guardian();  // says goodbye and reaps it
  Guardian(const Guardian&) = delete;
  Guardian& operator=(const Guardian&) = delete;

  // For a running job: armed while the cgroup is (about to be) frozen by us. No-ops for a
  // paused one.
  void arm();
  void disarm();

 private:
  void send(char c);
  bool paused_ = false;
  pid_t pid_ = -1;
  UniqueFd pipe_;
};

}  // namespace stasis::dump
