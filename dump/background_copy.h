// Snapshots that barely stop the job (`dump --leave-running`): the pages are copied after the
// thaw, each one before the job's first write to it lands.
//
// While the job is stopped, a userfaultfd is made in it (injected userfaultfd(2), taken over
// with pidfd_getfd(2) and closed in the job: stasis holds the only reference), in synchronous
// write-protect mode; the private anonymous VMAs (heap, stack, anonymous mappings) are
// registered with it and every page to save in them is write-protected (UFFDIO_WRITEPROTECT).
// What cannot be protected (private file mappings, shared memory, VMAs without PROT_READ or
// that another userfaultfd holds) is read at once. Then the job runs again while copy() saves
// the pages in address order, un-protecting each batch once it is read; a handler thread reads
// the write faults and copies the faulting page first (then un-protects it, which wakes the
// writer). The kernel never lets a protected page change but through such a fault; what
// changes a page without one (munmap, madvise(MADV_DONTNEED), mremap) also drops its
// write-protect bit from the page tables, which each copy checks after reading (pagemap bit
// 57): such a dump fails rather than save a state the job never had.
//
// If stasis dies, its userfaultfd closes and the kernel drops every registration and
// write-protect bit and wakes any thread waiting on a fault: the job runs on.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>

#include "dump/memory.h"
#include "dump/task.h"
#include "images/page_file.h"
#include "mm.pb.h"

namespace stasis::dump {

class BackgroundCopy {
 public:
  // While the job is stopped, before the memory layout is read: makes the userfaultfd in the
  // job. When this kernel or job does not allow it, protect() copies everything at once (the
  // dump is taken fully frozen, as before) and summary() says why.
  static std::unique_ptr<BackgroundCopy> open(Task& task);
  ~BackgroundCopy();
  BackgroundCopy(const BackgroundCopy&) = delete;
  BackgroundCopy& operator=(const BackgroundCopy&) = delete;

  // Still stopped: plans the pages of mm (sets Vma.dumped and guards), write-protects what it
  // can and reads the rest. If nothing could be protected, copies everything now (the stats
  // are returned and deferred() is false); else returns empty stats and copy() does the rest.
  MemoryStats protect(pb::MmState& mm, const std::filesystem::path& dir, int64_t id, images::Compression compression);
  bool deferred() const;

  // After the thaw: writes pages-<id>.img and pagemap-<id>.img, then releases the job's
  // memory (closes the userfaultfd). Throws if the job changed its memory without a write
  // fault before a page was copied (no checkpoint is then complete).
  MemoryStats copy();

  // For the summary: what was done and, when frozen, why.
  std::string summary() const;

  struct State;

 private:
  BackgroundCopy() = default;
  std::unique_ptr<State> s_;
};

}  // namespace stasis::dump
