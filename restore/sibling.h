// PID 1 of a job restored as a sibling of the restorer (CRIU's rst_sibling, which runc asks
// for): a child of the restorer's parent (CLONE_PARENT), so that runc can wait for it, PID 1
// of a new PID namespace, in the restorer's cgroups (where runc put `stasis swrk`), with no
// monitor and no container state of ours (runc keeps its own).
#pragma once

#include <sys/types.h>

#include <functional>

#include "common/fd.h"
#include "images/checkpoint.h"

namespace stasis::restore {

// The clone flags of the job's namespaces: CLONE_NEWPID always, and each other kind the job
// had of its own (namespaces.img); one it shared with its host is the restorer's.
int sibling_namespace_flags(const images::Checkpoint& checkpoint);

class SiblingInit {
 public:
  // Clones PID 1 with ns_flags; in its new mount namespace it makes the host's tree a slave
  // and mounts a /proc of its PID namespace, brings its loopback up in a new network
  // namespace, then waits for go() before running init (whose value is its exit status).
  // Throws when the clone or that setup fails (nothing is left then).
  SiblingInit(int ns_flags, const std::function<int()>& init);
  // Unless dismissed: SIGKILL to PID 1 (its namespace's processes die with it), and a bounded
  // wait until it has exited, so that runc finds its cgroups empty.
  ~SiblingInit();
  SiblingInit(const SiblingInit&) = delete;
  SiblingInit& operator=(const SiblingInit&) = delete;

  pid_t pid() const { return pid_; }
  void go();
  void dismiss() { dismissed_ = true; }

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd go_;
  bool dismissed_ = false;
};

}  // namespace stasis::restore
