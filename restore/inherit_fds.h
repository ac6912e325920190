// `stasis restore --inherit-fd SOURCE:pipe:[INODE]`: the job's end of a pipe whose other end
// was outside the dumped job is connected to SOURCE instead of a pipe with its other end
// closed. SOURCE is fd[N], fd N of `stasis restore` itself (as CRIU's option of that name),
// or a file path: opened for reading for the job's read end, for appending (created 0644 if
// missing) for its write end. Bytes that were waiting in the pipe at dump time are not
// delivered then (a warning says how many).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/fd.h"
#include "restore/file_images.h"

namespace stasis::restore {

struct InheritedEnd {
  uint64_t pipe_id = 0;
  std::string source;  // as given, for messages
  UniqueFd fd;         // in the restorer
};

// Checks every spec against the checkpoint's pipes to outside and opens its source, each at
// an fd at or above min_fd (clear of the fds the stub arranges). Throws UsageError for a spec
// that names no such pipe or a source of the wrong direction. Says, for each pipe to outside,
// what its other end is now.
std::vector<InheritedEnd> open_inherited_ends(const std::vector<std::string>& specs, const FileImages& files,
                                              int min_fd);

}  // namespace stasis::restore
