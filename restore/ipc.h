// ipc.img back into the restored container's IPC namespace (see dump/ipc.h), before the job
// runs: the sysctls first (the limits objects must fit in), then every System V object with its
// old id (kernel.*_next_id) and contents, the POSIX queues with their messages, and last the
// next-id sysctls the job had set.
#pragma once

#include <sys/types.h>

#include <vector>

#include "images/checkpoint.h"
#include "ipc.pb.h"
#include "mm.pb.h"
#include "restore/remote.h"

namespace stasis::restore {

// The records of ipc.img; none when the checkpoint has no such file.
std::vector<pb::IpcObject> load_ipc(const images::Checkpoint& checkpoint);

// Attachments the restorer keeps to segments that were removed (IPC_RMID) while the job had
// them attached: they keep such a segment alive until the restored job has attached it again.
class HeldSegments {
 public:
  HeldSegments() = default;
  ~HeldSegments() { release(); }
  HeldSegments(HeldSegments&& other) noexcept : addresses_(std::move(other.addresses_)) { other.addresses_.clear(); }
  HeldSegments& operator=(HeldSegments&&) = delete;
  void hold(void* address) { addresses_.push_back(address); }
  void release();  // shmdt each; the last detach of a removed segment destroys it

 private:
  std::vector<void*> addresses_;
};

// Recreates them in the IPC namespace of pid (a helper thread joins it). Throws on the first
// failure, naming the object; what was made dies with the namespace when the caller removes
// the container.
HeldSegments restore_ipc(pid_t pid, const std::vector<pb::IpcObject>& objects);

// Attaches the segment of a sysv_shm VMA in the restored task, where and as the job had it.
void attach_segment(Remote& r, const pb::Vma& vma);

}  // namespace stasis::restore
