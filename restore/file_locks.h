// File locks come back last, injected into the leader: a POSIX lock belongs to the process and
// goes away when the process closes any fd of its file, which restore does (the files it opened
// to map them). Each lock is taken without waiting: if another process holds a conflicting one
// (the original, when it was dumped with --leave-running), the restore fails and says so.
#pragma once

#include <vector>

#include "files.pb.h"
#include "restore/remote.h"

namespace stasis::restore {

void restore_file_locks(Remote& leader, const std::vector<pb::FdEntry>& fds);

}  // namespace stasis::restore
