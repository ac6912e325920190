// Installing a process's fd table, inside the stub before its address space is replaced.
#pragma once

#include <array>
#include <vector>

#include "common/fd.h"
#include "files.pb.h"
#include "restore/file_images.h"

namespace stasis::restore {

// The highest fd number the table uses (-1 for an empty table).
int max_fd(const std::vector<pb::FdEntry>& fds);

// Installs every FdEntry at its number with its close-on-exec flag. stdio[k] is the stub's
// original standard fd k (kept at a high number): INHERITED entries are wired to it, so the
// restored job talks to the new monitor as it did to the old one. Fds in keep (the stub's
// own) are left alone; every other fd is closed. A deleted working directory is entered
// (as a ghost, restore/regfiles.h); the path of any other is left to apply_process_attributes.
void install_fd_table(const std::vector<pb::FdEntry>& fds, const FileImages& images,
                      const std::array<int, 3>& stdio, const std::vector<int>& keep);

}  // namespace stasis::restore
