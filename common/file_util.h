// Small file helpers with errors that name the path.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "common/fd.h"

namespace stasis {

// open(2) that throws "open PATH: ..." on failure.
UniqueFd open_or_throw(const std::filesystem::path& path, int flags, mode_t mode = 0644);
// Whole small files (procfs, cgroupfs, state files).
std::string read_file(const std::filesystem::path& path);
// Writes without truncating first, as cgroupfs and procfs files want ("write PATH: ...").
void write_file(const std::filesystem::path& path, std::string_view data);
// Writes PATH.tmp, fsyncs and renames over PATH, so readers never see half a file.
// sync = false skips the fsync: readers still never see half a file, but a machine crash may
// lose the write (fine for runtime state such as the launcher's under /run).
void write_file_atomic(const std::filesystem::path& path, std::string_view data, bool sync = true);
// Full read/write loops over EINTR and short counts.
void read_exact(int fd, std::span<std::byte> out, std::string_view what);
void write_all(int fd, std::span<const std::byte> data, std::string_view what);

}  // namespace stasis
