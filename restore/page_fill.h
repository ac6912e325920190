// Writes a task's saved pages into its fresh address space (every VMA mapped already, the
// dumped ones writable), on as many threads as there are CPUs (up to four), each reading its
// own share of the page file through a mapping of it. Pages of private anonymous VMAs go in
// through a userfaultfd (restore/task_userfaultfd.h) when the kernel allows, the others, and
// all of them otherwise, with process_vm_writev. Saved zero pages of file mappings are written
// as zeros; those of anonymous memory are left to the kernel, which gives zeros.
#pragma once

#include <cstdint>

#include "restore/plan.h"
#include "restore/remote.h"

namespace stasis::restore {

struct FillStats {
  uint64_t pages = 0;
  uint64_t bytes = 0;
  uint64_t bytes_by_userfaultfd = 0;
};

// The page files must have been verified (Checkpoint::verify): chunk data is not checked again.
FillStats fill_pages(Remote& task, const RestorePlan& plan);

}  // namespace stasis::restore
