// Checks made before anything is started, so that an unusable checkpoint fails cleanly: the
// host (CPU state, vDSO), and the files the image maps or runs.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "images/checkpoint.h"
#include "restore/plan.h"

namespace stasis::restore {

void check_host_compatible(const images::Checkpoint& checkpoint, const RestorePlan& plan);
// Throws unless st (of path) still has the size and mtime recorded at dump time.
void check_same_file(const std::string& path, const struct stat& st, const pb::FileIdentity& identity);

// What makes st (of the path a RegFile is reopened from) another file than the one dumped, or
// "" when it is the same. Compared: the type; device and inode when boot_id (ours) is the
// dump's; size and mtime, except that a file open for appending may have grown (others
// appended: its writes go to the end anyway). Of a directory, only the type is compared.
std::string regfile_change(const pb::RegFile& file, const struct stat& st, const std::string& boot_id);

// Every file the fds reopen by path must be the dumped one (regfile_change); those named in
// allow_changed are accepted as they are now (plan.files.changed_ok), with a warning.
void check_open_files(RestorePlan& plan, const std::filesystem::path& rootfs,
                      const std::vector<std::string>& allow_changed);

// rootfs: the container's root as seen from here ("" = the host's).
void check_files_unchanged(const RestorePlan& plan, const std::filesystem::path& rootfs);

}  // namespace stasis::restore
