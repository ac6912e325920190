#include "dump/background_copy.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/compat.h"
#include "common/error.h"
#include "common/fault.h"
#include "common/fd.h"
#include "common/file_util.h"
#include "common/log.h"
#include "dump/inject.h"

namespace stasis::dump {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

constexpr uint64_t kPage = 4096;
// /proc/PID/pagemap: present, swapped, and the userfaultfd write-protect bit of the entry.
constexpr uint64_t kPmPresent = 1ull << 63, kPmSwap = 1ull << 62, kPmUffdWp = 1ull << 57;

struct Interval {
  uint64_t start, end;
};

// Memory whose pages the job's own page tables hold, and which a synchronous write-protect
// userfaultfd may cover: private anonymous memory. Private file mappings (the kernel allows
// write-protect there only in async mode) and shared memory (read from its object; other
// processes may write it) are read while the job is stopped.
bool protectable(const pb::Vma& v) {
  if (!v.dumped() || !(v.prot() & PROT_READ)) return false;
  switch (v.kind()) {
    case pb::Vma::ANON_PRIVATE:
    case pb::Vma::HEAP:
    case pb::Vma::STACK:
      return true;
    default:
      return false;
  }
}

}  // namespace

struct BackgroundCopy::State : BatchHook {
  pid_t pid = 0;
  UniqueFd uffd;
  std::string why_frozen;  // empty while the copy may still run in the background
  bool deferred = false;
  PagePlan plan;
  std::vector<Interval> protected_runs;  // sorted, write-protected at the freeze
  std::map<uint64_t, std::pair<uint64_t, size_t>> preread_index;  // start -> (end, offset in preread)
  std::vector<std::byte> preread;
  std::filesystem::path dir;
  int64_t id = 0;
  images::Compression compression{};
  UniqueFd mem;
  UniqueFd pagemap;
  UniqueFd stop;  // eventfd: the handler thread ends
  std::thread handler;

  std::mutex mutex;
  uint64_t progress = 0;  // every protected page below this was copied and un-protected
  std::unordered_map<uint64_t, std::unique_ptr<std::array<std::byte, kPage>>> stash;  // copied on a write fault
  std::string error;                                                                 // a page changed without a fault
  uint64_t faults = 0, fault_copies = 0, protected_bytes = 0, preread_bytes = 0;
  double protect_s = 0, copy_s = 0;
  bool paused = false;

  ~State() override { stop_handler(); }

  void stop_handler() {
    if (!handler.joinable()) return;
    uint64_t one = 1;
    if (::write(stop.get(), &one, sizeof one) < 0) log::warn("background copy: eventfd write: {}", describe_errno(errno));
    handler.join();
  }

  // Reads [addr, addr + len) of the job: process_vm_readv, or /proc/PID/mem (VMAs without
  // PROT_READ). False when part of it is not mapped (any more).
  bool read_job(uint64_t addr, std::byte* out, size_t len) {
    iovec local{out, len}, remote{reinterpret_cast<void*>(addr), len};
    if (::process_vm_readv(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len)) return true;
    if (!mem) mem = open_or_throw(fmt::format("/proc/{}/mem", pid), O_RDONLY | O_CLOEXEC);
    size_t done = 0;
    while (done < len) {
      ssize_t n = ::pread(mem.get(), out + done, len - done, static_cast<off_t>(addr + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  // The first page of [start, end) whose entry lost its write-protect bit (or is gone), or 0.
  uint64_t first_unprotected(uint64_t start, uint64_t end) {
    std::vector<uint64_t> entries((end - start) / kPage);
    const size_t bytes = entries.size() * sizeof(uint64_t);
    ssize_t n = ::pread(pagemap.get(), entries.data(), bytes, static_cast<off_t>(start / kPage * sizeof(uint64_t)));
    if (n != static_cast<ssize_t>(bytes)) return start;
    for (size_t i = 0; i < entries.size(); ++i) {
      const uint64_t e = entries[i];
      if (!(e & (kPmPresent | kPmSwap)) || !(e & kPmUffdWp)) return start + i * kPage;
    }
    return 0;
  }

  bool write_protect(uint64_t start, uint64_t len, bool on) {
    uffdio_writeprotect wp{};
    wp.range = {start, len};
    wp.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
    for (;;) {
      if (::ioctl(uffd.get(), UFFDIO_WRITEPROTECT, &wp) == 0) return true;
      if (errno == EAGAIN || errno == EINTR) continue;  // the layout is changing: again
      // ENOENT: unmapped since (the check of the copy says whether that mattered).
      if (errno != ENOENT)
        log::warn("pid {}: UFFDIO_WRITEPROTECT {:#x}+{:#x} ({}): {}", pid, start, len, on ? "protect" : "release",
                  describe_errno(errno));
      return false;
    }
  }

  void note_error(uint64_t page) {
    if (!error.empty()) return;
    error = fmt::format(
        "pid {}: its page at {:#x} changed after the freeze without a write to it (unmapped, discarded with madvise or "
        "moved with mremap) before it was copied, so the checkpoint would not hold the state at the freeze (a "
        "passing state: the dump starts again; STASIS_FAULT=dump-no-background-copy copies the pages with the job "
        "stopped)",
        pid, page);
  }

  bool is_protected(uint64_t page) const {
    auto it = std::upper_bound(protected_runs.begin(), protected_runs.end(), page,
                               [](uint64_t a, const Interval& i) { return a < i.end; });
    return it != protected_runs.end() && it->start <= page;
  }

  // The handler thread: a write to a protected page waits in the kernel until the page is
  // copied here (unless the main pass has it already) and un-protected.
  void handle_faults() {
    pollfd fds[2] = {{uffd.get(), POLLIN, 0}, {stop.get(), POLLIN, 0}};
    uffd_msg msgs[32];
    for (;;) {
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        log::error("background copy: poll of the userfaultfd: {}", describe_errno(errno));
        return;
      }
      if (fds[1].revents) return;
      ssize_t n = ::read(uffd.get(), msgs, sizeof msgs);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        log::error("background copy: read of the userfaultfd: {}", describe_errno(errno));
        return;
      }
      for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(uffd_msg); ++i)
        if (msgs[i].event == UFFD_EVENT_PAGEFAULT) on_fault(msgs[i].arg.pagefault.address & ~(kPage - 1));
    }
  }

  void on_fault(uint64_t page) {
    std::lock_guard lock(mutex);
    ++faults;
    if (page >= progress && !stash.count(page) && is_protected(page)) {
      auto copy = std::make_unique<std::array<std::byte, kPage>>();
      if (!read_job(page, copy->data(), kPage) || first_unprotected(page, page + kPage)) {
        note_error(page);
      } else {
        stash.emplace(page, std::move(copy));
        ++fault_copies;
      }
    }
    write_protect(page, kPage, false);  // and wakes the writer
  }

  // The main pass (PageCopier's reader): reads the batch, puts in what was read at the freeze
  // or copied on a fault, checks that the rest is what the freeze left, un-protects it.
  void read_batch(const std::vector<Range>& ranges, std::byte* buffer, const std::function<void()>& read) override {
    if (progress > 0 && !paused) {
      paused = true;
      fault_pause("dump-background-copy");  // the tests kill the dumper here, half way
    }
    std::lock_guard lock(mutex);
    // Tests: as if the job had unmapped the batch's first page before it was copied.
    if (fault_active("dump-background-copy-race") && !ranges.empty()) note_error(ranges.front().start);
    if (!error.empty()) throw PassingStateError(error);
    read();
    size_t off = 0;
    for (const auto& r : ranges) {
      const uint64_t a = r.start, b = r.start + r.length;
      std::byte* base = buffer + off - a;  // base + address = where that byte of the batch is
      // Read while stopped.
      auto pi = preread_index.upper_bound(a);
      if (pi != preread_index.begin()) --pi;
      for (; pi != preread_index.end() && pi->first < b; ++pi) {
        const uint64_t s = std::max(a, pi->first), e = std::min(b, pi->second.first);
        if (s < e) std::memcpy(base + s, preread.data() + pi->second.second + (s - pi->first), e - s);
      }
      // Protected since the freeze.
      auto it = std::upper_bound(protected_runs.begin(), protected_runs.end(), a,
                                 [](uint64_t x, const Interval& i) { return x < i.end; });
      for (; it != protected_runs.end() && it->start < b; ++it) {
        const uint64_t s = std::max(a, it->start), e = std::min(b, it->end);
        uint64_t checked = s;
        for (uint64_t p = s; p < e; p += kPage) {
          auto st = stash.find(p);
          if (st == stash.end()) continue;
          std::memcpy(base + p, st->second->data(), kPage);
          stash.erase(st);
          if (checked < p)
            if (uint64_t bad = first_unprotected(checked, p)) note_error(bad);
          checked = p + kPage;
        }
        if (checked < e)
          if (uint64_t bad = first_unprotected(checked, e)) note_error(bad);
        write_protect(s, e - s, false);
      }
      off += r.length;
      progress = b;
    }
    if (!error.empty()) throw PassingStateError(error);
  }

  // Copies the whole plan now, the job stopped (as a dump without background copy does).
  MemoryStats copy_frozen(std::string why) {
    why_frozen = std::move(why);
    uffd.reset();  // releases whatever was registered
    return copy_pages(pid, plan, dir, id, compression);
  }
};

std::unique_ptr<BackgroundCopy> BackgroundCopy::open(Task& task) {
  std::unique_ptr<BackgroundCopy> self(new BackgroundCopy);
  self->s_ = std::make_unique<State>();
  State& s = *self->s_;
  s.pid = task.host_pid;
  if (fault_active("dump-no-background-copy")) {
    s.why_frozen = "STASIS_FAULT=dump-no-background-copy";
    return self;
  }
  // Not UFFD_USER_MODE_ONLY: the kernel's own writes into the job's memory (read(2) into a
  // buffer) must wait for the copy too, not fail with EFAULT.
  long remote = 0;
  {
    Injector injector(s.pid, task.threads[0], task.threads.size());
    // Closed in the job before anything is registered (by the thread itself should stasis
    // die from the call's return on): stasis holds the only reference, so its exit releases
    // everything.
    int saved = 0;
    remote = injector.call_then_close(task.threads[0], SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK, [&](long fd) {
      UniqueFd pidfd(compat::sys_pidfd_open(s.pid, 0));
      if (pidfd) s.uffd.reset(compat::sys_pidfd_getfd(pidfd.get(), static_cast<int>(fd), 0));
      saved = errno;
    });
    if (remote >= 0 && !s.uffd) {
      s.why_frozen = fmt::format("pidfd_getfd of the job's userfaultfd: {}", describe_errno(saved));
    } else if (remote < 0) {
      s.why_frozen = fmt::format(
          "userfaultfd(2) in the job failed ({}); for a job without CAP_SYS_PTRACE it needs "
          "vm.unprivileged_userfaultfd=1",
          describe_errno(static_cast<int>(-remote)));
    }
    injector.unmap();
  }
  if (s.uffd) {
    uffdio_api api{};
    api.api = UFFD_API;
    if (::ioctl(s.uffd.get(), UFFDIO_API, &api) < 0 || !(api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
      s.why_frozen = "this kernel's userfaultfd has no write-protect mode (Linux 5.7+)";
      s.uffd.reset();
    }
  }
  return self;
}

BackgroundCopy::~BackgroundCopy() = default;

bool BackgroundCopy::deferred() const { return s_->deferred; }

MemoryStats BackgroundCopy::protect(pb::MmState& mm, const std::filesystem::path& dir, int64_t id,
                                    images::Compression compression) {
  State& s = *s_;
  s.dir = dir;
  s.id = id;
  s.compression = compression;
  auto t0 = Clock::now();
  s.plan = plan_pages(s.pid, mm);
  if (!s.why_frozen.empty()) return s.copy_frozen(s.why_frozen);
  const double plan_s = since(t0);

  std::vector<Interval> registered;
  for (const pb::Vma& v : mm.vmas()) {
    if (!protectable(v)) continue;
    uffdio_register reg{};
    reg.range = {v.start(), v.end() - v.start()};
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    if (::ioctl(s.uffd.get(), UFFDIO_REGISTER, &reg) < 0 || !(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT))) {
      // Another userfaultfd's, typically: read now.
      log::debug("pid {}: vma {:#x}-{:#x} ({}) cannot be write-protected ({}): read while the job is stopped", s.pid,
                 v.start(), v.end(), v.name(), describe_errno(errno));
      continue;
    }
    if (!registered.empty() && registered.back().end == v.start()) registered.back().end = v.end();
    else registered.push_back({v.start(), v.end()});
  }

  // Split the plan: runs in registered VMAs are protected, the rest read now.
  std::vector<Interval> preread_runs;
  auto add = [](std::vector<Interval>& to, uint64_t a, uint64_t b) {
    if (a >= b) return;
    if (!to.empty() && to.back().end == a) to.back().end = b;
    else to.push_back({a, b});
  };
  auto reg = registered.begin();
  for (const auto& run : s.plan.copy) {
    uint64_t a = run.start;
    while (a < run.end) {
      while (reg != registered.end() && reg->end <= a) ++reg;
      if (reg == registered.end() || reg->start >= run.end) {
        add(preread_runs, a, run.end);
        break;
      }
      if (reg->start > a) add(preread_runs, a, reg->start), a = reg->start;
      const uint64_t e = std::min(run.end, reg->end);
      add(s.protected_runs, a, e);
      a = e;
    }
  }
  if (s.protected_runs.empty()) return s.copy_frozen("no private anonymous memory to write-protect");
  const double register_s = since(t0) - plan_s;
  for (const auto& r : s.protected_runs) {
    if (!s.write_protect(r.start, r.end - r.start, true))
      return s.copy_frozen(fmt::format("UFFDIO_WRITEPROTECT of {:#x}-{:#x} failed", r.start, r.end));
    s.protected_bytes += r.end - r.start;
  }
  // Each copy is checked against the pagemap's write-protect bit (Linux 5.19+): without it,
  // nothing could tell a page the job discarded from one it left alone.
  s.pagemap = open_or_throw(fmt::format("/proc/{}/pagemap", s.pid), O_RDONLY | O_CLOEXEC);
  const uint64_t first = s.protected_runs.front().start;
  if (s.first_unprotected(first, first + kPage))
    return s.copy_frozen("this kernel's /proc/PID/pagemap does not show write-protect bits (Linux 5.19+)");
  for (const auto& r : preread_runs) s.preread_bytes += r.end - r.start;
  s.preread.resize(s.preread_bytes);
  size_t off = 0;
  for (const auto& r : preread_runs) {
    if (!s.read_job(r.start, s.preread.data() + off, r.end - r.start))
      fail("pid {}: read memory at {:#x} ({} bytes) while it is stopped", s.pid, r.start, r.end - r.start);
    s.preread_index.emplace(r.start, std::make_pair(r.end, off));
    off += r.end - r.start;
  }
  s.stop.reset(::eventfd(0, EFD_CLOEXEC));
  if (!s.stop) fail_errno(errno, "eventfd for the background copy");
  s.handler = std::thread([&s] { s.handle_faults(); });
  s.deferred = true;
  s.protect_s = since(t0);
  log::debug("background copy: pages planned in {:.3f}s, vmas registered in {:.3f}s, {} run(s) write-protected and "
             "the rest read in {:.3f}s",
             plan_s, register_s, s.protected_runs.size(), s.protect_s - plan_s - register_s);
  MemoryStats stats;
  stats.vmas_dumped = s.plan.vmas_dumped;
  stats.pagemap_scan = s.plan.pagemap_scan;
  stats.scan_seconds = s.plan.scan_seconds;
  return stats;
}

MemoryStats BackgroundCopy::copy() {
  State& s = *s_;
  auto t0 = Clock::now();
  MemoryStats stats;
  try {
    stats = copy_pages(s.pid, s.plan, s.dir, s.id, s.compression, /*job_running=*/true, &s);
  } catch (...) {
    s.stop_handler();
    s.uffd.reset();
    throw;
  }
  s.stop_handler();
  s.uffd.reset();  // every registration and remaining protection goes with it
  s.copy_s = since(t0);
  if (!s.error.empty()) throw PassingStateError(s.error);
  return stats;
}

std::string BackgroundCopy::summary() const {
  const State& s = *s_;
  if (!s.deferred) return "pages copied with the job stopped: " + s.why_frozen;
  return fmt::format(
      "pages copied while the job ran: {:.1f} MiB write-protected at the freeze ({:.3f}s), {:.1f} MiB read while "
      "stopped; {} write fault(s), {} page(s) copied on the job's first write; copy {:.3f}s",
      static_cast<double>(s.protected_bytes) / (1 << 20), s.protect_s,
      static_cast<double>(s.preread_bytes) / (1 << 20), s.faults, s.fault_copies, s.copy_s);
}

}  // namespace stasis::dump
