// Which pages of a vma hold data a dump must save: present or swapped out, not the shared
// zero page, and for private file mappings only the privately modified copies (the rest comes
// back from the file), never guard regions. Shared anonymous memory is asked of the shared memory object itself
// (SEEK_DATA/SEEK_HOLE through /proc/PID/map_files): its pages need not be in our task's
// page tables.
//
// PAGEMAP_SCAN (Linux 6.7+) answers in one ioctl per vma with runs of pages. Older kernels
// (Debian 12's 6.1, Ubuntu 22.04's 5.15) read /proc/PID/pagemap instead, 8 bytes per page,
// and apply the same rules to its bits. STASIS_FAULT=dump-no-pagemap-scan forces the fallback.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "common/compat.h"
#include "common/fd.h"
#include "mm.pb.h"

namespace stasis::dump {

class PageScanner {
 public:
  // Opens /proc/PID/pagemap and finds out once which way this kernel answers.
  explicit PageScanner(pid_t pid);

  // Calls fn(start, end) for each run of pages of vma to save, in address order.
  using RunFn = std::function<void(uint64_t start, uint64_t end)>;
  void scan(const pb::Vma& vma, const RunFn& fn);

  // Calls fn(start, end) for each guard region (MADV_GUARD_INSTALL) in vma. Kernels that
  // cannot report them (before 6.14) report none.
  void scan_guards(const pb::Vma& vma, const RunFn& fn);

  bool uses_pagemap_scan() const { return use_ioctl_; }

  // scan() of a VMA registered with a write-protect async userfaultfd (dump/dirty_tracking.h):
  // each run comes with its PAGE_IS_PRESENT, _SWAPPED and _WRITTEN categories as they were, and
  // every page reported is write-protected in the same call (PM_SCAN_WP_MATCHING), so that the
  // next scan finds written only what the job wrote since. PAGEMAP_SCAN only; throws when the
  // VMA is not in write-protect async mode (PM_SCAN_CHECK_WPASYNC).
  using CategoryRunFn = std::function<void(uint64_t start, uint64_t end, uint64_t categories)>;
  void scan_and_protect(const pb::Vma& vma, const CategoryRunFn& fn);

 private:
  void scan_ioctl(const pb::Vma& vma, const RunFn& fn);
  // The request of scan_ioctl: the pages of vma a dump saves.
  pm_scan_arg saved_pages_request(const pb::Vma& vma) const;
  // PAGEMAP_SCAN over vma for the categories of request (range and vector are set here).
  void pagemap_scan(const pb::Vma& vma, pm_scan_arg request, const char* what, const RunFn& fn);
  void scan_entries(const pb::Vma& vma, const RunFn& fn);
  void scan_shared_object(const pb::Vma& vma, const RunFn& fn);
  // The /proc/PID/pagemap way: runs of pages whose entry `save` accepts.
  void scan_entries_if(const pb::Vma& vma, const std::function<bool(uint64_t entry)>& save, const RunFn& fn);

  pid_t pid_;
  UniqueFd pagemap_;
  bool use_ioctl_ = false;
  bool knows_guards_ = false;  // PAGEMAP_SCAN reports guard regions (PAGE_IS_GUARD, 6.14+)
  uint64_t zero_pfn_ = 0;  // the shared zero page's frame (0: unknown, zero pages are read)
  std::vector<uint64_t> entries_;
};

}  // namespace stasis::dump
