// The contents of the restored container's namespaces, put back before the job runs (after a
// check that a namespace the job shared with its host, marked rejoin, is the restorer's): its UTS
// names (namespaces.img; the job may have changed them since `stasis run`) and its IPC objects
// (ipc.img, restore/ipc.h).
#pragma once

#include <sys/types.h>

#include "images/checkpoint.h"
#include "restore/ipc.h"

namespace stasis::restore {

// pid is the restored container's init, already in the new namespaces. Throws on failure; the
// caller removes the container, and with it all that was made here. The caller keeps what it
// returns until the job's memory is back (restore/ipc.h).
[[nodiscard]] HeldSegments restore_namespace_contents(const images::Checkpoint& checkpoint, pid_t pid);

}  // namespace stasis::restore
