// ipc.img: the contents of the job's own IPC namespace (a container's), read from inside that
// namespace by a helper thread: IPC sysctls that differ from a fresh namespace's, System V
// shared memory (contents included), semaphore sets, message queues (messages copied with
// MSG_COPY, left in place) and POSIX message queues (read and put back, under the freeze).
#pragma once

#include <sys/types.h>

#include <vector>

#include "images/checkpoint.h"
#include "ipc.pb.h"
#include "namespaces.pb.h"

namespace stasis::dump {

// Nothing when the job shares the host's IPC namespace (a --pid dump): the host's objects are
// not the job's to take. Throws UnsupportedError (the job untouched) for what restore could not
// bring back: an attached segment of the host's namespace, a segment attached outside the job
// or only in part, a POSIX queue with a notification registered, an open queue descriptor.
// Runs before the memory layout is read, which marks the job's segment VMAs (sysv_shm).
// processes: every process of the job (pid alone when empty), whose attachments are counted.
std::vector<pb::IpcObject> collect_ipc(pid_t pid, const pb::NamespaceState& namespaces,
                                       const std::vector<pid_t>& processes = {});

// ipc.img, written only when there is something in it.
void write_ipc(const images::Checkpoint& checkpoint, const std::vector<pb::IpcObject>& objects);

}  // namespace stasis::dump
