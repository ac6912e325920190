// The contents of the restored container's namespaces, put back before the job runs: its UTS
// names (namespaces.img; the job may have changed them since `stasis run`) and its IPC objects
// (ipc.img, restore/ipc.h).
#pragma once

#include <sys/types.h>

#include "images/checkpoint.h"

namespace stasis::restore {

// pid is the restored container's init, already in the new namespaces. Throws on failure; the
// caller removes the container, and with it all that was made here.
void restore_namespace_contents(const images::Checkpoint& checkpoint, pid_t pid);

}  // namespace stasis::restore
