// ipc.img back into the restored container's IPC namespace (see dump/ipc.h), before the job
// runs: the sysctls first (the limits objects must fit in), then every System V object with its
// old id (kernel.*_next_id) and contents, the POSIX queues with their messages, and last the
// next-id sysctls the job had set.
#pragma once

#include <sys/types.h>

#include <vector>

#include "images/checkpoint.h"
#include "ipc.pb.h"

namespace stasis::restore {

// The records of ipc.img; none when the checkpoint has no such file.
std::vector<pb::IpcObject> load_ipc(const images::Checkpoint& checkpoint);

// Recreates them in the IPC namespace of pid (a helper thread joins it). Throws on the first
// failure, naming the object; what was made dies with the namespace when the caller removes
// the container.
void restore_ipc(pid_t pid, const std::vector<pb::IpcObject>& objects);

}  // namespace stasis::restore
