// PageScanner: PAGEMAP_SCAN and its fallback for older kernels (/proc/PID/pagemap) find the
// same pages in a child with a known layout: written anonymous pages (not the ones only read,
// where those map the zero page), the privately modified page of a private file mapping (not the
// ones only read from the file, nor guard regions, which are found on their own), the touched page of a shared anonymous mapping, and the pages
// of another shared anonymous mapping that only a child of the process wrote (they are in the
// shared memory object, not in the process's page tables).
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "dump/page_scan.h"
#include "tests/support/test_util.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kPage = 4096;
using Runs = std::vector<std::pair<uint64_t, uint64_t>>;  // in pages from the vma start

struct Layout {
  uint64_t anon, file, shared, cold;
};

// A child that maps and touches its memory, reports where, then waits to be killed.
class Child {
 public:
  // with_guards: make pages 12 and 13 of the anonymous mapping a guard region (Linux 6.13+).
  Child(const fs::path& file, bool with_guards) {
    int p[2];
    if (::pipe(p) < 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(p[0]);
      auto* anon = static_cast<volatile char*>(
          ::mmap(nullptr, 16 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      int fd = ::open(file.c_str(), O_RDONLY);
      auto* mapped = static_cast<volatile char*>(::mmap(nullptr, 8 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
      auto* shared = static_cast<volatile char*>(
          ::mmap(nullptr, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
      anon[0] = 1;
      anon[kPage] = 1;
      anon[5 * kPage + 7] = 1;
      (void)anon[8 * kPage];  // read only: the zero page
      anon[12 * kPage] = 1;   // then made a guard region with page 13: neither is saved
      if (with_guards && ::madvise(const_cast<char*>(anon) + 12 * kPage, 2 * kPage, 102 /* MADV_GUARD_INSTALL */) < 0)
        ::_exit(1);
      for (uint64_t i = 0; i < 8; ++i) (void)mapped[i * kPage];  // the file's pages
      mapped[3 * kPage] = 'x';                                     // a private copy
      shared[2 * kPage] = 1;
      auto* cold = static_cast<volatile char*>(
          ::mmap(nullptr, 8 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
      pid_t writer = ::fork();
      if (writer == 0) {
        cold[1 * kPage] = 1;
        cold[6 * kPage + 100] = 1;
        ::_exit(0);
      }
      if (writer < 0 || ::waitpid(writer, nullptr, 0) != writer) ::_exit(1);
      Layout l{reinterpret_cast<uint64_t>(anon), reinterpret_cast<uint64_t>(mapped), reinterpret_cast<uint64_t>(shared),
               reinterpret_cast<uint64_t>(cold)};
      if (::write(p[1], &l, sizeof l) != sizeof l) ::_exit(1);
      for (;;) ::pause();
    }
    ::close(p[1]);
    ok_ = pid_ > 0 && ::read(p[0], &layout_, sizeof layout_) == sizeof layout_;
    ::close(p[0]);
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  bool ok() const { return ok_; }
  pid_t pid() const { return pid_; }
  const Layout& layout() const { return layout_; }

 private:
  pid_t pid_ = -1;
  bool ok_ = false;
  Layout layout_{};
};

pb::Vma vma(uint64_t start, uint64_t pages, pb::Vma::Kind kind) {
  pb::Vma v;
  v.set_start(start);
  v.set_end(start + pages * kPage);
  v.set_kind(kind);
  return v;
}

Runs scan(dump::PageScanner& scanner, const pb::Vma& v) {
  Runs runs;
  scanner.scan(v, [&](uint64_t s, uint64_t e) { runs.emplace_back((s - v.start()) / kPage, (e - v.start()) / kPage); });
  return runs;
}

// Whether a read fault in private anonymous memory maps the shared zero page here (two pages
// only read have one frame). Some kernels give every such fault a page of its own, which a
// dump then saves like a written one.
bool reads_map_the_zero_page() {
  auto* m = static_cast<volatile char*>(
      ::mmap(nullptr, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (m == MAP_FAILED) return true;
  (void)m[0];
  (void)m[2 * kPage];
  uint64_t entries[3] = {};
  int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  const bool read = fd >= 0 && ::pread(fd, entries, sizeof entries,
                                       static_cast<off_t>(reinterpret_cast<uint64_t>(m) / kPage * 8)) ==
                                   static_cast<ssize_t>(sizeof entries);
  if (fd >= 0) ::close(fd);
  ::munmap(const_cast<char*>(m), 4 * kPage);
  constexpr uint64_t kPfn = (1ull << 55) - 1;
  return !read || (entries[0] & kPfn) == (entries[2] & kPfn);
}

TEST(PageScanner, BothWaysFindTheSamePages) {
  TempDir tmp("page-scan");
  fs::path file = tmp.path() / "data";
  {
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    std::vector<char> bytes(8 * kPage, 'f');
    ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
  }
  // What this kernel has is tested; what it lacks is left out of the expectations.
  const bool has_scan = !missing_feature("pagemap-scan");
  const bool has_guards = !missing_feature("guard-regions");
  const bool zero_page = reads_map_the_zero_page();
  Child child(file, has_guards);
  ASSERT_TRUE(child.ok());
  const Layout& l = child.layout();
  const pb::Vma anon = vma(l.anon, 16, pb::Vma::ANON_PRIVATE);
  const pb::Vma mapped = vma(l.file, 8, pb::Vma::FILE_PRIVATE);
  const pb::Vma shared = vma(l.shared, 4, pb::Vma::ANON_SHARED);
  const pb::Vma cold = vma(l.cold, 8, pb::Vma::ANON_SHARED);

  for (bool fallback : {false, true}) {
    SCOPED_TRACE(fallback ? "/proc/PID/pagemap" : "PAGEMAP_SCAN");
    if (fallback) ::setenv("STASIS_FAULT", "dump-no-pagemap-scan", 1);
    dump::PageScanner scanner(child.pid());
    ::unsetenv("STASIS_FAULT");
    EXPECT_EQ(scanner.uses_pagemap_scan(), !fallback && has_scan);
    Runs written{{0, 2}, {5, 6}};
    if (!zero_page) written.emplace_back(8, 9);  // only read, but a page of its own
    if (!has_guards) written.emplace_back(12, 13);
    EXPECT_EQ(scan(scanner, anon), written);
    Runs guards;
    scanner.scan_guards(anon, [&](uint64_t s, uint64_t e) {
      guards.emplace_back((s - anon.start()) / kPage, (e - anon.start()) / kPage);
    });
    EXPECT_EQ(guards, has_guards ? (Runs{{12, 14}}) : Runs{});
    EXPECT_EQ(scan(scanner, mapped), (Runs{{3, 4}}));
    EXPECT_EQ(scan(scanner, shared), (Runs{{2, 3}}));
    EXPECT_EQ(scan(scanner, cold), (Runs{{1, 2}, {6, 7}}));
  }
}

// More runs in one vma than one PAGEMAP_SCAN call returns (4096): every page is reported once,
// in order. (The kernel may report the last run of a call past its walk_end, where the next
// call starts again; a page saved twice made restore's UFFDIO_COPY fail with EEXIST.)
TEST(PageScanner, ManyRunsInOneVmaComeOnceEach) {
  constexpr uint64_t kPages = 3 * 8192;  // every third page written: 8192 runs
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    auto* m = static_cast<volatile char*>(
        ::mmap(nullptr, kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ::madvise(const_cast<char*>(m), kPages * kPage, MADV_NOHUGEPAGE);
    for (uint64_t i = 0; i < kPages; i += 3) m[i * kPage] = 1;
    uint64_t at = reinterpret_cast<uint64_t>(m);
    if (::write(p[1], &at, sizeof at) != sizeof at) ::_exit(1);
    for (;;) ::pause();
  }
  ASSERT_GT(pid, 0);
  uint64_t start = 0;
  const bool got = ::read(p[0], &start, sizeof start) == sizeof start;
  ::close(p[0]);
  ::close(p[1]);
  struct Reap {
    pid_t pid;
    ~Reap() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{pid};
  ASSERT_TRUE(got);
  pb::Vma vma;
  vma.set_start(start);
  vma.set_end(start + kPages * kPage);
  vma.set_kind(pb::Vma::ANON_PRIVATE);
  vma.set_prot(PROT_READ | PROT_WRITE);
  dump::PageScanner scanner(pid);
  uint64_t last = 0, pages = 0;
  bool ordered = true;
  scanner.scan(vma, [&](uint64_t s, uint64_t e) {
    if (s < last) ordered = false;
    last = e;
    pages += (e - s) / kPage;
  });
  EXPECT_TRUE(ordered) << "a run starts before the end of the one before";
  EXPECT_EQ(pages, kPages / 3);
}

// Dirty tracking's scan (dump/dirty_tracking.h) over more runs than one PAGEMAP_SCAN call
// returns: after a first scan has write-protected everything, the next reports as written
// exactly the pages the process wrote since (none lost, none extra), each once, and the one
// after that none.
TEST(PageScanner, ScanAndProtectFindsExactlyTheWrittenPages) {
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  constexpr uint64_t kPages = 3 * 8192;
  auto written_now = [](uint64_t i) { return i % 9 == 0 || i % 27 == 1; };  // some old pages, some new
  int to_child[2], from_child[2];
  ASSERT_EQ(::pipe(to_child), 0);
  ASSERT_EQ(::pipe(from_child), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    auto* m = static_cast<volatile char*>(
        ::mmap(nullptr, kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ::madvise(const_cast<char*>(m), kPages * kPage, MADV_NOHUGEPAGE);
    for (uint64_t i = 0; i < kPages; i += 3) m[i * kPage] = 1;
    uint64_t msg[2] = {reinterpret_cast<uint64_t>(m),
                       static_cast<uint64_t>(::syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1))};
    if (::write(from_child[1], msg, sizeof msg) != sizeof msg) ::_exit(1);
    char c;
    if (::read(to_child[0], &c, 1) != 1) ::_exit(1);
    for (uint64_t i = 0; i < kPages; ++i)
      if (written_now(i)) m[i * kPage + 5] = 2;
    if (::write(from_child[1], &c, 1) != 1) ::_exit(1);
    for (;;) ::pause();
  }
  ASSERT_GT(pid, 0);
  struct Reap {
    pid_t pid;
    ~Reap() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{pid};
  uint64_t msg[2] = {};
  ASSERT_EQ(::read(from_child[0], msg, sizeof msg), static_cast<ssize_t>(sizeof msg));
  int pidfd = static_cast<int>(::syscall(__NR_pidfd_open, pid, 0));
  ASSERT_GE(pidfd, 0);
  int uffd = static_cast<int>(::syscall(__NR_pidfd_getfd, pidfd, static_cast<int>(msg[1]), 0));
  ::close(pidfd);
  ASSERT_GE(uffd, 0);
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
  ASSERT_EQ(::ioctl(uffd, UFFDIO_API, &api), 0);
  uffdio_register reg{};
  reg.range = {msg[0], kPages * kPage};
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  ASSERT_EQ(::ioctl(uffd, UFFDIO_REGISTER, &reg), 0);
  pb::Vma vma;
  vma.set_start(msg[0]);
  vma.set_end(msg[0] + kPages * kPage);
  vma.set_kind(pb::Vma::ANON_PRIVATE);
  vma.set_prot(PROT_READ | PROT_WRITE);
  dump::PageScanner scanner(pid);
  // Page index -> how many times reported, and as written how many times.
  auto scan = [&](std::vector<int>& seen, std::vector<int>& written) {
    seen.assign(kPages, 0);
    written.assign(kPages, 0);
    scanner.scan_and_protect(vma, [&](uint64_t s, uint64_t e, uint64_t categories) {
      for (uint64_t a = s; a < e; a += kPage) {
        ++seen[(a - msg[0]) / kPage];
        if (categories & PAGE_IS_WRITTEN) ++written[(a - msg[0]) / kPage];
      }
    });
  };
  std::vector<int> seen, written;
  scan(seen, written);  // everything present, now write-protected
  char c = 'w';
  ASSERT_EQ(::write(to_child[1], &c, 1), 1);
  ASSERT_EQ(::read(from_child[0], &c, 1), 1);
  scan(seen, written);
  uint64_t wrong = 0;
  for (uint64_t i = 0; i < kPages; ++i) {
    const bool present = i % 3 == 0 || written_now(i);
    if (seen[i] != (present ? 1 : 0) || written[i] != (written_now(i) ? 1 : 0)) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << "pages reported wrongly after the writes";
  scan(seen, written);
  EXPECT_EQ(std::count(written.begin(), written.end(), 1), 0) << "written pages left after a scan that protects";
  ::close(uffd);
  for (int fd : {to_child[0], to_child[1], from_child[0], from_child[1]}) ::close(fd);
}

TEST(PageScanner, GoneProcessIsANamedError) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ASSERT_GT(pid, 0);
  ::waitpid(pid, nullptr, 0);
  std::string err = error_of([&] { dump::PageScanner scanner(pid); });
  EXPECT_NE(err.find(std::to_string(pid)), std::string::npos) << err;
}

}  // namespace
}  // namespace stasis::test
