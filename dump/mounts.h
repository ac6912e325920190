// mounts.img and tmpfs.img: the mounts a container's job made inside its own mount namespace
// (any mount but those PID 1 reported once the launcher had set the namespace up, see
// ContainerState.launcher_mounts), in mount order, with the contents of its tmpfs instances.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "container.pb.h"
#include "images/checkpoint.h"
#include "mounts.pb.h"
#include "namespaces.pb.h"

namespace stasis::dump {

inline constexpr uint64_t kDefaultTmpfsLimit = 64ull << 20;

struct MountsDump {
  std::vector<pb::MountEntry> mounts;
  std::vector<pb::TmpfsFile> files;
};

// Nothing when the job shares the host's mount namespace (a --pid dump) or made no mount.
// A job dumped by pid in a mount namespace other than ours (runc, `unshare -m` + pivot_root):
// its root (a directory of this host) first, then every mount under it; refused, naming pid
// and namespace, when its root is no host directory or a mount is of a kind restore cannot
// make.
// Throws UnsupportedError (the job untouched) naming the mount point and type for what restore
// could not bring back: another file system than tmpfs, proc, sysfs, mqueue or devpts mounted
// inside (a block device, overlay, FUSE...), a tmpfs over tmpfs_limit bytes or covered by a
// later mount, a socket file in a tmpfs, and a file of the job (fd, cwd, root, mapping) that
// lies on one of these mounts (restore opens files before it mounts them).
MountsDump collect_mounts(pid_t pid, const pb::NamespaceState& namespaces, const pb::ContainerState* state,
                          uint64_t tmpfs_limit);

// mounts.img and tmpfs.img, written only when there is something in them.
void write_mounts(const images::Checkpoint& checkpoint, const MountsDump& mounts);

}  // namespace stasis::dump
