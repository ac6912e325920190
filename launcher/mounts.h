// Bind mounts of host paths into a container (`stasis run -v HOST:CONTAINER[:ro]`).
#pragma once

#include <string>

#include "container.pb.h"

namespace stasis::launcher {

// "HOST:CONTAINER[:ro|:rw]" -> a BindMount (paths as given). Throws UsageError.
pb::BindMount parse_volume(const std::string& text);

// Resolves each source to an absolute, canonical host path and checks both ends; throws
// UsageError naming the -v that is wrong (a missing source, a relative target, a target that
// is missing on the host's file system when there is no rootfs to create it in).
void validate_mounts(pb::ContainerConfig& config);

// In PID 1's fresh mount namespace, before pivot_root: binds every source on its target under
// `root` ("" for the host's file system). With a rootfs a missing target is created (a
// directory, or an empty file for a file). Throws Error.
void apply_bind_mounts(const pb::ContainerConfig& config, const std::string& root);

}  // namespace stasis::launcher
