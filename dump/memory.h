// mm-<nspid>.img (layout) and pagemap/pages-<nspid>.img (contents).
//
// Layout: /proc/PID/stat (code/data/arg/env bounds), the exact brk (injected brk(0) before
// this, passed in), auxv, exe, and every vma of /proc/PID/smaps classified by kind.
// Contents: PageScanner finds the present or swapped pages of each dumpable vma (for private
// file mappings only the privately modified ones), process_vm_readv reads them in large
// batches (pread on /proc/PID/mem for vmas without PROT_READ), PageWriter stores them.
#pragma once

#include <sys/types.h>

#include <filesystem>

#include "images/page_file.h"
#include "mm.pb.h"

namespace stasis::dump {

pb::MmState collect_mm(pid_t pid, uint64_t brk);

// The kind of a maps entry; exposed for unit tests.
pb::Vma::Kind classify_vma(const std::string& path, bool shared);

struct MemoryStats {
  images::PageStats pages;
  uint64_t vmas_dumped = 0;
  bool pagemap_scan = false;  // pages found by PAGEMAP_SCAN, not by reading /proc/PID/pagemap
  double scan_seconds = 0;
  double read_seconds = 0;
  double encode_seconds = 0;  // zero scan, checksums, compression, on the encoder thread
  double write_seconds = 0;   // writing the page file, on the writer thread
  double wait_seconds = 0;    // the reader waiting for a free buffer
};

// Writes pages-<id>.img and pagemap-<id>.img; sets Vma.dumped in mm.
MemoryStats dump_pages(pid_t pid, pb::MmState& mm, const std::filesystem::path& dir, int64_t id,
                       images::Compression compression);

}  // namespace stasis::dump
