// Writes a task's saved pages into its fresh address space (every VMA mapped already, the
// dumped ones writable), on as many threads as there are CPUs (as many as a 32 MiB budget of
// buffers allows), each taking chunks of the page file in turn: read into a buffer of its own
// with pread, hashed, decompressed if need be, and written into the task from that buffer, so
// that what goes in is what was checked, and memory stays bounded. Pages of private anonymous VMAs go in
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

// Reads plan.pages (opened by Checkpoint::open_pages: chunk headers checked against the
// inventory) and checks every chunk's data against its checksum as it goes in; throws an
// Error naming the page file and the chunk's offset on the first bad one, after which the
// task must not run (its memory is partly unchecked).
FillStats fill_pages(Remote& task, const RestorePlan& plan);

}  // namespace stasis::restore
