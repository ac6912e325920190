// The contents of the restored container's namespaces, put back before the job runs (after a
// check that a namespace the job shared with its host, marked rejoin, is the restorer's): its UTS
// names (namespaces.img; the job may have changed them since `stasis run`) and its IPC objects
// (ipc.img, restore/ipc.h).
#pragma once

#include <sys/types.h>

#include "container.pb.h"
#include "images/checkpoint.h"
#include "restore/ipc.h"

namespace stasis::restore {

// The namespaces the job shared with its host and that the restored container shares with
// the restoring host (namespaces.img, rejoin): mnt, uts, ipc into config.host_namespaces.
void share_host_namespaces(const images::Checkpoint& checkpoint, pb::ContainerConfig& config);

// pid is the restored container's init, already in the new namespaces. Throws on failure; the
// caller removes the container, and with it all that was made here. The caller keeps what it
// returns until the job's memory is back (restore/ipc.h).
[[nodiscard]] HeldSegments restore_namespace_contents(const images::Checkpoint& checkpoint, pid_t pid);

}  // namespace stasis::restore
