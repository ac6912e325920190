// Checks made before anything is started, so that an unusable checkpoint fails cleanly: the
// host (CPU state, vDSO), and the files the image maps or runs.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "images/checkpoint.h"
#include "restore/plan.h"

namespace stasis::restore {

void check_host_compatible(const images::Checkpoint& checkpoint, const RestorePlan& plan);
// Throws unless st (of path) still has the size and mtime recorded at dump time.
void check_same_file(const std::string& path, const struct stat& st, const pb::FileIdentity& identity);

// rootfs: the container's root as seen from here ("" = the host's).
void check_files_unchanged(const RestorePlan& plan, const std::filesystem::path& rootfs);

}  // namespace stasis::restore
