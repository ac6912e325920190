// mm-<nspid>.img (layout) and pagemap/pages-<nspid>.img (contents).
//
// Layout: /proc/PID/stat (code/data/arg/env bounds), the exact brk (injected brk(0) before
// this, passed in), auxv, exe, and every vma of /proc/PID/smaps classified by kind.
// Contents: PageScanner finds the present or swapped pages of each dumpable vma (for private
// file mappings only the privately modified ones), process_vm_readv reads them in large
// batches (pread on /proc/PID/mem for vmas without PROT_READ), PageWriter stores them.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <functional>
#include <vector>

#include "images/page_chain.h"
#include "images/page_file.h"
#include "mm.pb.h"

namespace stasis::dump {

// ghost_limit: most bytes saved for a deleted tmpfs file mapped shared (dump --ghost-limit).
pb::MmState collect_mm(pid_t pid, uint64_t brk, uint64_t ghost_limit = 64ull << 20);

// The kind of a maps entry; exposed for unit tests.
pb::Vma::Kind classify_vma(const std::string& path, bool shared);

struct MemoryStats {
  images::PageStats pages;
  uint64_t vmas_dumped = 0;
  bool pagemap_scan = false;  // pages found by PAGEMAP_SCAN, not by reading /proc/PID/pagemap
  uint64_t vmas_tracked = 0;  // VMAs saved incrementally (only what was written since the parent)
  double scan_seconds = 0;
  double read_seconds = 0;
  double encode_seconds = 0;  // zero scan, checksums, compression, on the encoder thread
  double write_seconds = 0;   // writing the page file, on the writer thread
  double wait_seconds = 0;    // the reader waiting for a free buffer
};

// What dirty tracking adds to a dump's page scan (dump/dirty_tracking.h).
struct PageTracking {
  // The tracking userfaultfd: every VMA saved through the page tables is registered with it
  // (write-protect mode), and every page saved is write-protected as it is found.
  int uffd = -1;
  // The written bits count from the parent's dump: pages of VMAs tracked since then that are
  // present, unwritten and in `parent_pages` are left to the parent (in_parent entries).
  bool incremental = false;
  const images::RangeSet* parent_pages = nullptr;
};

// The pages to save, found while the job is stopped (and write-protected, with tracking):
// copy_pages may then read them while the job runs again.
struct PagePlan {
  struct Run {
    uint64_t start, end;
    bool readable;  // the vma has PROT_READ
  };
  std::vector<Run> copy;
  images::RangeSet in_parent;
  uint64_t vmas_dumped = 0;
  uint64_t vmas_tracked = 0;  // saved incrementally
  bool pagemap_scan = false;
  double scan_seconds = 0;
};
// Around the read of each batch of copy_pages: `read` fills buffer from the job (the ranges one
// after the other); the hook may replace some of what it read before the batch is encoded
// (dump/background_copy.h: pages copied earlier, and the check that nothing else changed).
class BatchHook {
 public:
  struct Range {
    uint64_t start;
    uint64_t length;
  };
  virtual ~BatchHook() = default;
  virtual void read_batch(const std::vector<Range>& ranges, std::byte* buffer, const std::function<void()>& read) = 0;
};

// Scans every vma of mm (sets Vma.dumped and the guard regions in mm).
PagePlan plan_pages(pid_t pid, pb::MmState& mm, const PageTracking* tracking = nullptr);
// Writes pages-<id>.img and pagemap-<id>.img from the plan. job_running: the job may have
// changed its memory since the plan (a pre-dump's copy after the thaw): a page that can no
// longer be read is stored as zeros, which no later dump refers to (its VMA is gone, and a new
// one there is not tracked).
MemoryStats copy_pages(pid_t pid, const PagePlan& plan, const std::filesystem::path& dir, int64_t id,
                       images::Compression compression, bool job_running = false, BatchHook* hook = nullptr);

// Both, the job stopped throughout. Writes pages-<id>.img and pagemap-<id>.img; sets
// Vma.dumped in mm.
MemoryStats dump_pages(pid_t pid, pb::MmState& mm, const std::filesystem::path& dir, int64_t id,
                       images::Compression compression, const PageTracking* tracking = nullptr);

}  // namespace stasis::dump
