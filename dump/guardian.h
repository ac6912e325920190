// The guardian: puts right what the kernel leaves behind when the dumper dies (kill -9, OOM)
// while it holds the job's cgroup frozen. A tracer's death detaches its tracees by itself
// (and dump/inject.h makes sure an injected thread then finds its own context again), but
// nothing thaws a cgroup: the job would stay frozen for good. So the dumper forks this small
// process before it freezes; it waits on a pipe, and when the pipe closes without a goodbye
// while it is armed, it thaws the cgroup. It runs in a session of its own, so that signals to
// the dumper's process group (Ctrl-C, kill -- -PGID) do not take it down with the dumper.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/cgroup.h"
#include "common/fd.h"

namespace stasis::dump {

class Guardian {
 public:
  explicit Guardian(const Cgroup& cgroup);
  ~Guardian();  // says goodbye and reaps it
  Guardian(const Guardian&) = delete;
  Guardian& operator=(const Guardian&) = delete;

  // Armed: the cgroup is (about to be) frozen by us; thaw it if we die.
  void arm();
  void disarm();

 private:
  void send(char c);
  pid_t pid_ = -1;
  UniqueFd pipe_;
};

}  // namespace stasis::dump
