#include "dump/page_scan.h"

#include <fcntl.h>

#include <algorithm>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/compat.h"
#include "common/error.h"
#include "common/fault.h"
#include "common/file_util.h"

namespace stasis::dump {

namespace {

constexpr size_t kRegions = 4096;  // page_region entries per PAGEMAP_SCAN call
constexpr size_t kEntries = 64 << 10;  // /proc/PID/pagemap entries per read (256 MiB of address space)
constexpr uint64_t kPageSize = 4096;

// /proc/PID/pagemap bits (Documentation/admin-guide/mm/pagemap.rst).
constexpr uint64_t kPresent = 1ull << 63;
constexpr uint64_t kSwapped = 1ull << 62;
constexpr uint64_t kFileOrSharedAnon = 1ull << 61;
constexpr uint64_t kGuardRegion = 1ull << 58;  // Linux 6.14+
constexpr uint64_t kPfnMask = (1ull << 55) - 1;

// Whether PAGEMAP_SCAN takes a request for these categories. An empty range: the kernel checks
// the request and reports nothing, or does not know the ioctl or a category (EINVAL).
bool pagemap_scan_takes(int pagemap_fd, uint64_t categories) {
  pm_scan_arg arg{};
  arg.size = sizeof arg;
  arg.category_anyof_mask = categories;
  arg.return_mask = categories;
  return ::ioctl(pagemap_fd, PAGEMAP_SCAN, &arg) >= 0;
}

bool pagemap_scan_works(int pagemap_fd) {
  return !fault_active("dump-no-pagemap-scan") && pagemap_scan_takes(pagemap_fd, PAGE_IS_PRESENT);
}

// The frame of the shared zero page, as our own pagemap shows it for a page only read: so that
// the fallback can leave out pages that were never written. 0 when frames are hidden from us
// (no CAP_SYS_ADMIN); zero pages are then read and stored as zero ranges, which costs time only.
uint64_t find_zero_pfn() {
  void* p = ::mmap(nullptr, kPageSize, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 0;
  volatile const char* c = static_cast<const char*>(p);
  (void)*c;  // a read fault maps the zero page
  uint64_t entry = 0;
  int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (::pread(fd, &entry, sizeof entry, static_cast<off_t>(reinterpret_cast<uint64_t>(p) / kPageSize * 8)) !=
        sizeof entry)
      entry = 0;
    ::close(fd);
  }
  ::munmap(p, kPageSize);
  return (entry & kPresent) ? (entry & kPfnMask) : 0;
}

}  // namespace

PageScanner::PageScanner(pid_t pid)
    : pid_(pid), pagemap_(open_or_throw(fmt::format("/proc/{}/pagemap", pid), O_RDONLY)) {
  use_ioctl_ = pagemap_scan_works(pagemap_.get());
  knows_guards_ = use_ioctl_ && pagemap_scan_takes(pagemap_.get(), PAGE_IS_GUARD);  // 6.14+
  if (!use_ioctl_) zero_pfn_ = find_zero_pfn();
}

void PageScanner::scan(const pb::Vma& vma, const RunFn& fn) {
  if (vma.kind() == pb::Vma::ANON_SHARED) scan_shared_object(vma, fn);
  else if (use_ioctl_) scan_ioctl(vma, fn);
  else scan_entries(vma, fn);
}

void PageScanner::scan_shared_object(const pb::Vma& vma, const RunFn& fn) {
  // The page tables show only the pages this process has mapped right now; the shared
  // memory object holds more (written through another mapping, dropped by MADV_DONTNEED,
  // swapped out). SEEK_DATA/SEEK_HOLE on the object itself find them all; swapped pages
  // count as data.
  const std::string link = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid_, vma.start(), vma.end());
  UniqueFd object(::open(link.c_str(), O_RDONLY | O_CLOEXEC));
  if (!object)
    fail_errno(errno, "pid {}: open {} (the shared memory behind vma {:#x}-{:#x} {})", pid_, link, vma.start(),
               vma.end(), vma.name());
  const uint64_t first = vma.pgoff(), last = vma.pgoff() + (vma.end() - vma.start());
  for (uint64_t at = first; at < last;) {
    off_t data = ::lseek(object.get(), static_cast<off_t>(at), SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // no data from here on
    if (data < 0) fail_errno(errno, "pid {}: lseek SEEK_DATA at {} in {} ({})", pid_, at, link, vma.name());
    if (static_cast<uint64_t>(data) >= last) break;
    off_t hole = ::lseek(object.get(), data, SEEK_HOLE);
    if (hole < 0) fail_errno(errno, "pid {}: lseek SEEK_HOLE at {} in {} ({})", pid_, data, link, vma.name());
    const uint64_t begin = static_cast<uint64_t>(data) / kPageSize * kPageSize;
    const uint64_t end = std::min<uint64_t>((static_cast<uint64_t>(hole) + kPageSize - 1) / kPageSize * kPageSize, last);
    if (end <= begin) break;
    fn(vma.start() + (begin - first), vma.start() + (end - first));
    at = end;
  }
}

pm_scan_arg PageScanner::saved_pages_request(const pb::Vma& vma) const {
  pm_scan_arg request{};
  request.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
  // Pages of the zero page read as zeros anyway; for private file mappings only the
  // privately modified (anonymous) pages matter: the rest comes from the file. Guard regions
  // look swapped out (their markers are swap entries) and hold nothing.
  request.category_inverted = PAGE_IS_PFNZERO;
  request.category_mask = PAGE_IS_PFNZERO;
  if (knows_guards_) {
    request.category_inverted |= PAGE_IS_GUARD;
    request.category_mask |= PAGE_IS_GUARD;
  }
  if (vma.kind() == pb::Vma::FILE_PRIVATE) {
    request.category_inverted |= PAGE_IS_FILE;
    request.category_mask |= PAGE_IS_FILE;
  }
  request.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
  return request;
}

void PageScanner::scan_ioctl(const pb::Vma& vma, const RunFn& fn) {
  pagemap_scan(vma, saved_pages_request(vma), "PAGEMAP_SCAN", fn);
}

void PageScanner::scan_and_protect(const pb::Vma& vma, const CategoryRunFn& fn) {
  if (!use_ioctl_) fail("pid {}: dirty tracking needs PAGEMAP_SCAN (Linux 6.7+)", pid_);
  pm_scan_arg arg = saved_pages_request(vma);
  arg.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
  arg.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_WRITTEN;
  std::vector<page_region> regions(kRegions);
  arg.size = sizeof arg;
  arg.start = vma.start();
  arg.end = vma.end();
  arg.vec = reinterpret_cast<uint64_t>(regions.data());
  arg.vec_len = regions.size();
  uint64_t last_end = 0;
  while (arg.start < arg.end) {
    int n = ::ioctl(pagemap_.get(), PAGEMAP_SCAN, &arg);
    if (n < 0)
      fail_errno(errno, "pid {}: PAGEMAP_SCAN with write-protect of vma {:#x}-{:#x} ({})", pid_, vma.start(),
                 vma.end(), vma.name());
    for (int i = 0; i < n; ++i) {
      // The first report of a page is the one that counts: it has the categories from before
      // the write-protect (see pagemap_scan above for why a page can come twice).
      const uint64_t start = std::max<uint64_t>(regions[i].start, last_end);
      if (start >= regions[i].end) continue;
      last_end = regions[i].end;
      fn(start, regions[i].end, regions[i].categories);
    }
    if (arg.walk_end <= arg.start) break;
    arg.start = arg.walk_end;
  }
}

void PageScanner::pagemap_scan(const pb::Vma& vma, pm_scan_arg arg, const char* what, const RunFn& fn) {
  std::vector<page_region> regions(kRegions);
  arg.size = sizeof arg;
  arg.start = vma.start();
  arg.end = vma.end();
  arg.vec = reinterpret_cast<uint64_t>(regions.data());
  arg.vec_len = regions.size();
  uint64_t last_end = 0;
  while (arg.start < arg.end) {
    int n = ::ioctl(pagemap_.get(), PAGEMAP_SCAN, &arg);
    if (n < 0) fail_errno(errno, "pid {}: {} of vma {:#x}-{:#x} ({})", pid_, what, vma.start(), vma.end(), vma.name());
    // When the regions fill the vector, the last one reported may reach past walk_end, where
    // the next call starts (seen on 6.18 with a few thousand runs in a vma): a page is then
    // reported twice, and must be saved once.
    for (int i = 0; i < n; ++i) {
      const uint64_t start = std::max<uint64_t>(regions[i].start, last_end);
      if (start >= regions[i].end) continue;
      last_end = regions[i].end;
      fn(start, regions[i].end);
    }
    if (arg.walk_end <= arg.start) break;
    arg.start = arg.walk_end;
  }
}

void PageScanner::scan_entries(const pb::Vma& vma, const RunFn& fn) {
  const bool skip_file_pages = vma.kind() == pb::Vma::FILE_PRIVATE;
  scan_entries_if(
      vma,
      [&](uint64_t e) {
        if (!(e & (kPresent | kSwapped)) || (e & kGuardRegion)) return false;
        if (skip_file_pages && (e & kFileOrSharedAnon)) return false;
        return !(zero_pfn_ != 0 && (e & kPresent) && (e & kPfnMask) == zero_pfn_);
      },
      fn);
}

void PageScanner::scan_guards(const pb::Vma& vma, const RunFn& fn) {
  if (!use_ioctl_) {
    scan_entries_if(vma, [](uint64_t e) { return (e & kGuardRegion) != 0; }, fn);
    return;
  }
  if (!knows_guards_) return;
  pm_scan_arg request{};
  request.category_anyof_mask = PAGE_IS_GUARD;
  request.return_mask = PAGE_IS_GUARD;
  pagemap_scan(vma, request, "PAGEMAP_SCAN for guard regions", fn);
}

void PageScanner::scan_entries_if(const pb::Vma& vma, const std::function<bool(uint64_t entry)>& save,
                                  const RunFn& fn) {
  entries_.resize(kEntries);
  uint64_t run_start = 0, run_end = 0;  // the run being built; empty when equal
  for (uint64_t at = vma.start(); at < vma.end();) {
    const size_t count = static_cast<size_t>(std::min<uint64_t>((vma.end() - at) / kPageSize, kEntries));
    const auto offset = static_cast<off_t>(at / kPageSize * sizeof(uint64_t));
    const size_t want = count * sizeof(uint64_t);
    size_t got = 0;
    while (got < want) {
      ssize_t n = ::pread(pagemap_.get(), reinterpret_cast<char*>(entries_.data()) + got, want - got,
                          offset + static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        fail_errno(n < 0 ? errno : EIO, "pid {}: read /proc/{}/pagemap for vma {:#x}-{:#x} ({})", pid_, pid_,
                   vma.start(), vma.end(), vma.name());
      got += static_cast<size_t>(n);
    }
    for (size_t i = 0; i < count; ++i) {
      if (!save(entries_[i])) continue;
      const uint64_t page = at + i * kPageSize;
      if (run_end != page) {
        if (run_start != run_end) fn(run_start, run_end);
        run_start = page;
      }
      run_end = page + kPageSize;
    }
    at += count * kPageSize;
  }
  if (run_start != run_end) fn(run_start, run_end);
}

}  // namespace stasis::dump
