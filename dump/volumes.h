// Files of the job reached through a `run -v` bind mount: refused at dump time. Restore checks
// and reopens files by their path from the host, where a container path does not lead into
// the mount, so such a dump would not restore.
#pragma once

#include <sys/types.h>

#include "container.pb.h"

namespace stasis::dump {

// Throws UnsupportedError naming the file and the mount when an open fd, a mapped file, the
// executable or the working directory of pid lies on one of config's bind mounts.
void refuse_files_in_volumes(pid_t pid, const pb::ContainerConfig& config);

}  // namespace stasis::dump
