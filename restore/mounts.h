// mounts.img and tmpfs.img back into the restored container's mount namespace (see
// dump/mounts.h): each mount the job had made, in the same order, with the same options and
// propagation, and its tmpfs instances filled, before the job's files are opened and before it
// runs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "images/checkpoint.h"
#include "mounts.pb.h"

namespace stasis::restore {

struct MountPlan {
  std::vector<pb::MountEntry> mounts;
  std::map<uint32_t, std::vector<pb::TmpfsFile>> files;  // by mount id, parents first
};

// Nothing when the checkpoint has no mounts.img. Throws on an entry restore cannot apply (an
// unknown kind, a path that climbs out of its tmpfs).
MountPlan load_mounts(const images::Checkpoint& checkpoint);

// The job's root and its external bind mounts at other places of this host than at the dump
// (runc's restore: the rootfs bound at criu-root, and ext_mnt, the bind mounts of its
// configuration by mount point): the root's host directory becomes root ("" keeps it), and a
// bind of a host path whose mount point is a key of external takes that key's value as its
// host path. A key that names no such mount (runc names every device node and bind of its
// configuration) changes nothing.
void relocate_mounts(MountPlan& plan, const std::string& root, const std::map<std::string, std::string>& external);

// Before anything is started: every bind source that lies on the host's file system (or the
// container's rootfs) must exist. Throws naming the mount and the missing path.
void check_mount_sources(const MountPlan& plan, const std::string& rootfs);

// Where the restorer finds, before anything starts, the file the job knew as job_path: under
// rootfs ("" = the host's file system), or, for a tree recorded with its root, through that
// tree (the root's or a bind's host directory). "" when the file lies on a mount the stub
// makes anew (a tmpfs, proc...), out of the restorer's sight.
std::string path_on_host(const MountPlan& plan, const std::string& rootfs, const std::string& job_path);

// Whether path is dir or lies below it (as paths, component by component).
bool is_under(const std::string& path, const std::string& dir);

// In the container (the stub, before it opens the job's files): mounts everything, fills the
// tmpfs instances, sets the propagation, and checks it. Throws naming the mount; what was made
// dies with the namespace when the caller removes the container. after_each, when set, runs
// once each mount is made, with where it is now (under the job's root while that is built).
void restore_mounts(const MountPlan& plan,
                    const std::function<void(const pb::MountEntry& m, const std::string& now_at)>& after_each = {});

}  // namespace stasis::restore
