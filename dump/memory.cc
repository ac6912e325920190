#include "dump/memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#include <cstring>

#include "common/compat.h"
#include "common/error.h"
#include "common/free_list.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/proc.h"
#include "dump/files.h"
#include "dump/page_scan.h"
#include "images/vma_kind.h"
#include "common/interrupt.h"

namespace stasis::dump {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// CPU time of the calling thread: what a stage costs, whatever else the machine runs.
double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

constexpr size_t kBatchBytes = 2 << 20;  // one process_vm_readv reads up to this much
constexpr size_t kMaxIov = 1024;         // IOV_MAX

bool should_dump(pb::Vma::Kind kind) {
  switch (kind) {
    case pb::Vma::ANON_PRIVATE:
    case pb::Vma::ANON_SHARED:
    case pb::Vma::FILE_PRIVATE:
    case pb::Vma::HEAP:
    case pb::Vma::STACK:
      return true;
    default:
      return false;
  }
}

// The page buffers of one PageCopier (kBuffers batches), kept for the next one once it is done:
// a tree's processes are copied one after another (two at once), and fresh buffers for each
// would be faulted in and zeroed by the kernel again, as much memory traffic as the copy.
class BufferPool {
 public:
  static std::byte* take(size_t bytes) {
    if (auto block = spare().take()) return *block;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail_errno(errno, "mmap {} bytes for the page buffers", bytes);
    return static_cast<std::byte*>(p);
  }
  static void give_back(std::byte* block, size_t bytes) {
    if (!spare().give(block)) ::munmap(block, bytes);
  }

 private:
  // At most as many blocks as CPUs stay (the dump copies that many processes at once).
  static FreeList<std::byte*>& spare() {
    static FreeList<std::byte*> list(std::max(1u, std::thread::hardware_concurrency()));
    return list;
  }
};

// Copies page ranges from the task into the page file in three stages, each on its own
// thread, so that reading the task, compressing and writing the file overlap: the calling
// thread reads batches into one of a few 2 MiB buffers (small enough that the data is still
// in the CPU caches for the next stages), an encoder thread hands them to PageWriter::encode
// (zero pages, checksums, compression) and a writer thread does the I/O. Writing into tmpfs
// costs about as much as everything else together, so it gets a thread of its own.
class PageCopier {
 public:
  // job_running: pages that can no longer be read are stored as zeros (see copy_pages).
  PageCopier(pid_t pid, images::PageWriter& writer, MemoryStats& stats, bool job_running = false,
             BatchHook* hook = nullptr)
      : pid_(pid), writer_(writer), stats_(stats), job_running_(job_running), hook_(hook) {
    memory_ = BufferPool::take(kBuffers * kBatchBytes);
    for (size_t i = 0; i < kBuffers; ++i) free_.push_back(memory_ + i * kBatchBytes);
    encoder_thread_ = std::thread([this] { encode_loop(); });
    writer_thread_ = std::thread([this] { write_loop(); });
  }
  ~PageCopier() {
    stop_threads();  // never free a buffer another stage still reads
    BufferPool::give_back(memory_, kBuffers * kBatchBytes);
  }
  PageCopier(const PageCopier&) = delete;
  PageCopier& operator=(const PageCopier&) = delete;

  // Queues [start, end); readable = the vma has PROT_READ (else /proc/PID/mem is used).
  void add(uint64_t start, uint64_t end, bool readable) {
    if (readable != readable_ && !ranges_.empty()) flush();
    readable_ = readable;
    while (start < end) {
      uint64_t n = std::min<uint64_t>(end - start, kBatchBytes - queued_);
      ranges_.push_back({start, n});
      queued_ += n;
      start += n;
      if (queued_ == kBatchBytes || ranges_.size() == kMaxIov) flush();
    }
  }

  // Reads what is queued into a free buffer and hands it to the encoder.
  void flush() {
    if (ranges_.empty()) return;
    check_interrupted("dump", "the job was left running");
    auto t0 = Clock::now();
    std::byte* buffer = nullptr;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return !free_.empty() || error_; });
      if (error_) std::rethrow_exception(error_);
      buffer = free_.back();
      free_.pop_back();
    }
    stats_.wait_seconds += since(t0);
    t0 = Clock::now();
    const double cpu0 = thread_cpu_seconds();
    try {
      auto read = [&] {
        if (readable_) read_vm(buffer);
        else read_mem(buffer);
      };
      if (hook_) hook_->read_batch(ranges_, buffer, read);
      else read();
    } catch (...) {
      std::lock_guard lock(mutex_);
      free_.push_back(buffer);
      throw;
    }
    stats_.read_seconds += since(t0);
    read_cpu_seconds_ += thread_cpu_seconds() - cpu0;
    {
      std::lock_guard lock(mutex_);
      read_.push_back({buffer, std::move(ranges_), {}});
    }
    cv_.notify_all();
    ranges_.clear();
    queued_ = 0;
  }

  // Flushes, waits for the other stages to finish everything; rethrows their error.
  void finish() {
    flush();
    stop_threads();
    if (error_) std::rethrow_exception(error_);
    stats_.encode_seconds += encode_seconds_;
    stats_.write_seconds += write_seconds_;
    log::debug("page stages, CPU time: read {:.3f}s, encode {:.3f}s, write {:.3f}s", read_cpu_seconds_,
               encode_cpu_seconds_, write_cpu_seconds_);
  }

 private:
  static constexpr size_t kBuffers = 6;

  using Range = BatchHook::Range;
  struct Batch {
    std::byte* buffer;
    std::vector<Range> ranges;
    images::PageWriter::Batch writes;
  };

  // Takes the next batch from `from`; false once the previous stage is done and `from` drained,
  // or on an error anywhere.
  bool next(std::deque<Batch>& from, const bool& from_done, Batch& out) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return !from.empty() || from_done || error_; });
    if (error_ || from.empty()) return false;
    out = std::move(from.front());
    from.pop_front();
    return true;
  }

  void record_error(std::byte* buffer) {
    std::lock_guard lock(mutex_);
    if (!error_) error_ = std::current_exception();
    free_.push_back(buffer);
    cv_.notify_all();
  }

  void encode_loop() {
    Batch batch;
    std::vector<images::PageWriter::Range> pieces;
    while (next(read_, read_done_, batch)) {
      auto t = Clock::now();
      try {
        // One call for the whole batch: its chunk closes with it, and is checksummed in one pass.
        pieces.clear();
        size_t off = 0;
        for (const auto& r : batch.ranges) {
          pieces.push_back({r.start, std::span<const std::byte>(batch.buffer + off, r.length)});
          off += r.length;
        }
        writer_.encode(pieces, batch.writes);
      } catch (...) {
        record_error(batch.buffer);
        break;
      }
      encode_seconds_ += since(t);
      {
        std::lock_guard lock(mutex_);
        encoded_.push_back(std::move(batch));
      }
      cv_.notify_all();
    }
    encode_cpu_seconds_ = thread_cpu_seconds();
    std::lock_guard lock(mutex_);
    encoded_done_ = true;
    cv_.notify_all();
  }

  void write_loop() {
    // The whole thread's CPU time, whichever way it ends.
    struct Account {
      double& to;
      ~Account() { to = thread_cpu_seconds(); }
    } account{write_cpu_seconds_};
    Batch batch;
    while (next(encoded_, encoded_done_, batch)) {
      auto t = Clock::now();
      try {
        writer_.write(batch.writes);
      } catch (...) {
        record_error(batch.buffer);
        return;
      }
      write_seconds_ += since(t);
      {
        std::lock_guard lock(mutex_);
        free_.push_back(batch.buffer);
      }
      cv_.notify_all();
    }
  }

  void stop_threads() {
    {
      std::lock_guard lock(mutex_);
      read_done_ = true;
    }
    cv_.notify_all();
    if (encoder_thread_.joinable()) encoder_thread_.join();
    if (writer_thread_.joinable()) writer_thread_.join();
  }

  void read_vm(std::byte* buffer) {
    std::vector<iovec> remote;
    remote.reserve(ranges_.size());
    for (const auto& r : ranges_) remote.push_back({reinterpret_cast<void*>(r.start), r.length});
    iovec local{buffer, queued_};
    ssize_t n = ::process_vm_readv(pid_, &local, 1, remote.data(), remote.size(), 0);
    if (n == static_cast<ssize_t>(queued_)) return;
    // A short read (a page that cannot be read this way): fall back to /proc/PID/mem.
    read_mem(buffer);
  }

  void read_mem(std::byte* buffer) {
    if (!mem_) mem_ = open_or_throw(fmt::format("/proc/{}/mem", pid_), O_RDONLY);
    size_t off = 0;
    for (const auto& r : ranges_) {
      uint64_t done = 0;
      while (done < r.length) {
        ssize_t n = ::pread(mem_.get(), buffer + off + done, r.length - done, static_cast<off_t>(r.start + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 && job_running_) {
          // Unmapped since the plan: zeros for this page, on with the next.
          const uint64_t page_end = std::min<uint64_t>((r.start + done) / 4096 * 4096 + 4096, r.start + r.length);
          std::memset(buffer + off + done, 0, page_end - (r.start + done));
          done = page_end - r.start;
          continue;
        }
        if (n <= 0)
          fail_errno(n < 0 ? errno : EIO, "pid {}: read memory at {:#x} ({} bytes) through /proc/{}/mem", pid_,
                     r.start + done, r.length - done, pid_);
        done += static_cast<uint64_t>(n);
      }
      off += r.length;
    }
  }

  pid_t pid_;
  images::PageWriter& writer_;
  MemoryStats& stats_;
  bool job_running_ = false;
  BatchHook* hook_ = nullptr;
  std::byte* memory_ = nullptr;
  std::vector<Range> ranges_;  // queued for the next batch
  uint64_t queued_ = 0;
  bool readable_ = true;
  UniqueFd mem_;

  std::thread encoder_thread_;
  std::thread writer_thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::byte*> free_;  // buffers the reader may fill
  std::deque<Batch> read_;        // filled, waiting for the encoder
  std::deque<Batch> encoded_;     // encoded, waiting for the writer
  bool read_done_ = false;
  bool encoded_done_ = false;
  std::exception_ptr error_;
  double encode_seconds_ = 0;  // written by the encoder thread, read after join
  double write_seconds_ = 0;   // written by the writer thread, read after join
  double read_cpu_seconds_ = 0;
  double encode_cpu_seconds_ = 0;  // the encoder thread's, set as it ends
  double write_cpu_seconds_ = 0;   // the writer thread's, set as it ends
};

}  // namespace

pb::Vma::Kind classify_vma(const std::string& path, bool shared) {
  if (path == "[heap]") return pb::Vma::HEAP;
  if (path == "[stack]") return pb::Vma::STACK;
  if (path == "[vdso]") return pb::Vma::VDSO;
  if (path == "[vvar]") return pb::Vma::VVAR;
  if (path == "[vvar_vclock]") return pb::Vma::VVAR_VCLOCK;
  if (path == "[vsyscall]") return pb::Vma::VSYSCALL;
  if (path == "/dev/zero (deleted)" || path.rfind("/SYSV", 0) == 0 || path.rfind("[anon_shmem:", 0) == 0)
    return pb::Vma::ANON_SHARED;
  if (!path.empty() && path[0] == '/') return shared ? pb::Vma::FILE_SHARED : pb::Vma::FILE_PRIVATE;
  return shared ? pb::Vma::ANON_SHARED : pb::Vma::ANON_PRIVATE;
}

namespace {

// A shared mapping of a memfd: its name and size. A memfd sealed against writes is refused:
// restore writes the pages in through the mapping.
void describe_memfd_mapping(pid_t pid, uint64_t start, uint64_t end, pb::Vma& v) {
  const std::string link = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, start, end);
  UniqueFd memfd = open_or_throw(link, O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (::fstat(memfd.get(), &st) < 0) fail_errno(errno, "pid {}: stat {}", pid, link);
  const int seals = ::fcntl(memfd.get(), F_GET_SEALS);
  if (seals > 0 && (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)))
    throw UnsupportedError(fmt::format("pid {}: vma {:#x}-{:#x} maps a memfd sealed against writes: not supported yet",
                                       pid, start, end));
  const std::string path = proc::read_link(link);
  const std::string_view prefix = "/memfd:", suffix = " (deleted)";
  std::string name = path.substr(prefix.size());
  if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
    name.resize(name.size() - suffix.size());
  v.set_memfd_name(name);
  v.set_memfd_size(static_cast<uint64_t>(st.st_size));
  v.set_memfd_seals(seals > 0 ? static_cast<uint32_t>(seals) : 0);
  v.set_memfd_mode(st.st_mode);
  v.set_memfd_uid(st.st_uid);
  v.set_memfd_gid(st.st_gid);
}

// A shared mapping of a tmpfs file unlinked since (a POSIX semaphore or shm_open segment once
// unlinked, as python's multiprocessing does): it comes back as a memfd named after the file, made
// once and shared like one. A deleted file elsewhere cannot be recreated that way: refused.
void describe_deleted_tmpfs_mapping(pid_t pid, const proc::MapEntry& m, uint64_t ghost_limit, pb::Vma& v) {
  const std::string link = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.start, m.end);
  UniqueFd file = open_or_throw(link, O_RDONLY | O_CLOEXEC);
  struct statfs sfs {};
  if (::fstatfs(file.get(), &sfs) < 0) fail_errno(errno, "pid {}: statfs {} ({})", pid, link, m.path);
  if (sfs.f_type != TMPFS_MAGIC)
    throw UnsupportedError(fmt::format("pid {}: vma {:#x}-{:#x} maps the deleted file {}, which is not on tmpfs: "
                                       "only deleted tmpfs files mapped shared can be restored",
                                       pid, m.start, m.end, m.path));
  struct stat st {};
  if (::fstat(file.get(), &st) < 0) fail_errno(errno, "pid {}: stat {} ({})", pid, link, m.path);
  if (static_cast<uint64_t>(st.st_size) > ghost_limit)
    throw UnsupportedError(fmt::format("pid {}: vma {:#x}-{:#x} maps the deleted tmpfs file {} of {} bytes, above "
                                       "--ghost-limit {}: raise --ghost-limit to save it",
                                       pid, m.start, m.end, m.path, st.st_size, ghost_limit));
  // An fd on it is saved as a ghost file, a second object restore would not tie to this one.
  for (int fd : proc::list_fds(pid)) {
    struct stat fst {};
    if (::stat(fmt::format("/proc/{}/fd/{}", pid, fd).c_str(), &fst) == 0 && fst.st_dev == st.st_dev &&
        fst.st_ino == st.st_ino)
      throw UnsupportedError(fmt::format("pid {}: vma {:#x}-{:#x} maps the deleted tmpfs file {}, which fd {} holds "
                                         "open too: not supported yet",
                                         pid, m.start, m.end, m.path, fd));
  }
  std::string name = m.path.substr(m.path.rfind('/') + 1);
  if (name.size() > 249) name.resize(249);  // memfd_create's limit on names
  v.set_memfd_name(name);
  v.set_memfd_size(static_cast<uint64_t>(st.st_size));
  v.set_memfd_seals(0);
  v.set_memfd_mode(st.st_mode);
  v.set_memfd_uid(st.st_uid);
  v.set_memfd_gid(st.st_gid);
}

}  // namespace

pb::MmState collect_mm(pid_t pid, uint64_t brk, uint64_t ghost_limit) {
  pb::MmState mm;
  auto stat = proc::read_stat(pid);
  mm.set_start_code(stat.start_code);
  mm.set_end_code(stat.end_code);
  mm.set_start_stack(stat.start_stack);
  mm.set_start_data(stat.start_data);
  mm.set_end_data(stat.end_data);
  mm.set_start_brk(stat.start_brk);
  mm.set_arg_start(stat.arg_start);
  mm.set_arg_end(stat.arg_end);
  mm.set_env_start(stat.env_start);
  mm.set_env_end(stat.env_end);
  mm.set_brk(brk);
  mm.set_auxv(read_file(fmt::format("/proc/{}/auxv", pid)));
  std::string exe = fmt::format("/proc/{}/exe", pid);
  mm.set_exe_path(proc::read_link(exe));
  struct stat st {};
  if (::stat(exe.c_str(), &st) == 0) *mm.mutable_exe_file() = identity_of(st);
  else fail_errno(errno, "stat {} ({})", exe, mm.exe_path());

  for (const auto& m : proc::read_smaps(pid)) {
    pb::Vma* v = mm.add_vmas();
    // The image keeps the name as the kernel prints it, " (deleted)" included.
    const std::string name = m.deleted ? m.path + " (deleted)" : m.path;
    const bool shared = m.shared;
    v->set_start(m.start);
    v->set_end(m.end);
    uint32_t prot = 0;
    if (m.read) prot |= PROT_READ;
    if (m.write) prot |= PROT_WRITE;
    if (m.exec) prot |= PROT_EXEC;
    v->set_prot(prot);
    v->set_pgoff(m.offset);
    v->set_name(name);
    auto kind = classify_vma(name, shared);
    const bool memfd = m.deleted && m.path.rfind("/memfd:", 0) == 0;
    if (memfd && shared) {
      // Its pages are read through the memfd itself, like shared anonymous memory.
      kind = pb::Vma::ANON_SHARED;
      describe_memfd_mapping(pid, m.start, m.end, *v);
    } else if (m.deleted && shared && !m.path.empty() && m.path[0] == '/' && kind == pb::Vma::FILE_SHARED) {
      kind = pb::Vma::ANON_SHARED;
      describe_deleted_tmpfs_mapping(pid, m, ghost_limit, *v);
    }
    v->set_kind(kind);
    uint32_t flags = shared ? MAP_SHARED : MAP_PRIVATE;
    if (images::is_private_anonymous(kind) || (kind == pb::Vma::ANON_SHARED && v->memfd_name().empty()))
      flags |= MAP_ANONYMOUS;
    for (const auto& f : m.vm_flags) {
      v->add_vm_flags(f);
      if (f == "gd") flags |= MAP_GROWSDOWN;
    }
    v->set_flags(flags);
    if (kind == pb::Vma::ANON_SHARED) v->set_shmem_id(m.inode);
    // Restored as plain shared memory it would no longer be the segment: restore attaches the
    // segment that ipc.img brings back (dump/ipc.cc has refused the attachments it cannot).
    if (name.rfind("/SYSV", 0) == 0) v->set_sysv_shm(true);
    if (images::is_file_backed(kind)) {
      if (m.deleted)
        throw UnsupportedError(fmt::format("pid {}: vma {:#x}-{:#x} maps the deleted file {}: not supported yet", pid,
                                           m.start, m.end, name));
      v->set_path(name);
      std::string mf = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.start, m.end);
      if (::stat(mf.c_str(), &st) < 0) fail_errno(errno, "pid {}: stat {} ({})", pid, mf, name);
      *v->mutable_file() = identity_of(st);
    }
  }
  return mm;
}

namespace {

bool has_vm_flag(const pb::Vma& v, std::string_view flag) {
  for (const auto& f : v.vm_flags())
    if (f == flag) return true;
  return false;
}

// Registers the vma with the tracking userfaultfd for write-protect faults. Registering a
// range that is already ours again succeeds; one registered with another userfaultfd fails
// (EBUSY), as does a kind of memory the kernel cannot track.
bool register_for_tracking(int uffd, pid_t pid, const pb::Vma& v) {
  uffdio_register reg{};
  reg.range = {v.start(), v.end() - v.start()};
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (::ioctl(uffd, UFFDIO_REGISTER, &reg) == 0) return true;
  log::debug("pid {}: vma {:#x}-{:#x} ({}) cannot be tracked (UFFDIO_REGISTER: {}); saved whole each time", pid,
             v.start(), v.end(), v.name(), describe_errno(errno));
  return false;
}

}  // namespace

PagePlan plan_pages(pid_t pid, pb::MmState& mm, const PageTracking* tracking) {
  PagePlan plan;
  PageScanner scanner(pid);
  plan.pagemap_scan = scanner.uses_pagemap_scan();
  auto t0 = Clock::now();
  auto add_copy = [&](uint64_t start, uint64_t end, bool readable) {
    if (!plan.copy.empty() && plan.copy.back().end == start && plan.copy.back().readable == readable)
      plan.copy.back().end = end;
    else
      plan.copy.push_back({start, end, readable});
  };
  for (pb::Vma& v : *mm.mutable_vmas()) {
    if (!images::is_kernel_mapping(v.kind()))
      scanner.scan_guards(v, [&](uint64_t start, uint64_t end) {
        auto* g = v.add_guards();
        g->set_start(start);
        g->set_end(end);
      });
    if (!should_dump(v.kind()) || v.sysv_shm()) continue;  // a segment's pages are in ipc.img
    v.set_dumped(true);
    ++plan.vmas_dumped;
    const bool readable = v.prot() & PROT_READ;
    // Shared memory is read from its object, not the page tables: saved whole each time.
    if (tracking && tracking->uffd >= 0 && v.kind() != pb::Vma::ANON_SHARED) {
      const bool tracked_before = has_vm_flag(v, "uw");
      if (register_for_tracking(tracking->uffd, pid, v)) {
        const bool incremental = tracking->incremental && tracked_before && tracking->parent_pages;
        if (incremental) ++plan.vmas_tracked;
        scanner.scan_and_protect(v, [&](uint64_t start, uint64_t end, uint64_t categories) {
          // Present and unwritten since the parent's dump: the parent's copy is this page.
          // Swapped-out entries may be write-protect markers of pages dropped since: saved.
          if (!incremental || !(categories & PAGE_IS_PRESENT) || (categories & PAGE_IS_WRITTEN)) {
            add_copy(start, end, readable);
            return;
          }
          tracking->parent_pages->inside(start, end, [&](uint64_t a, uint64_t b) { plan.in_parent.add(a, b); });
          tracking->parent_pages->outside(start, end, [&](uint64_t a, uint64_t b) { add_copy(a, b, readable); });
        });
        continue;
      }
    }
    scanner.scan(v, [&](uint64_t start, uint64_t end) { add_copy(start, end, readable); });
  }
  plan.scan_seconds = since(t0);
  return plan;
}

MemoryStats copy_pages(pid_t pid, const PagePlan& plan, const std::filesystem::path& dir, int64_t id,
                       images::Compression compression, bool job_running, BatchHook* hook) {
  MemoryStats stats;
  stats.pagemap_scan = plan.pagemap_scan;
  stats.vmas_dumped = plan.vmas_dumped;
  stats.vmas_tracked = plan.vmas_tracked;
  stats.scan_seconds = plan.scan_seconds;
  images::PageWriter writer(dir, id, compression);
  {
    PageCopier copier(pid, writer, stats, job_running, hook);
    for (const auto& r : plan.copy) copier.add(r.start, r.end, r.readable);
    copier.finish();
  }
  for (const auto& [start, end] : plan.in_parent.ranges()) writer.add_in_parent(start, (end - start) / 4096);
  auto t0 = Clock::now();
  writer.finish();
  stats.write_seconds += since(t0);
  stats.pages = writer.stats();
  return stats;
}

MemoryStats dump_pages(pid_t pid, pb::MmState& mm, const std::filesystem::path& dir, int64_t id,
                       images::Compression compression, const PageTracking* tracking) {
  PagePlan plan = plan_pages(pid, mm, tracking);
  return copy_pages(pid, plan, dir, id, compression);
}

}  // namespace stasis::dump
