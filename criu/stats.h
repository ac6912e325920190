// stats-dump, CRIU's statistics of a dump, in CRIU's form: podman reads it from the work
// directory for `podman container checkpoint --print-stats`, and CRI-O and podman put it in
// their checkpoint archives (docs/criu.md).
#pragma once

#include "dump/dump.h"

namespace stasis::criu {

inline constexpr const char* kStatsDumpName = "stats-dump";

// Writes stats-dump into the directory dir_fd from what the dump measured. Throws Error.
void write_dump_stats(int dir_fd, const dump::DumpReport& report);

}  // namespace stasis::criu
