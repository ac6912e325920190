#include "restore/page_fill.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/error.h"
#include "common/fault.h"
#include "common/interrupt.h"
#include "common/progress.h"
#include "common/ptrace.h"
#include "images/page_file.h"
#include "images/vma_kind.h"
#include "restore/task_userfaultfd.h"

namespace stasis::restore {
namespace {

using images::is_file_backed;
using images::is_private_anonymous;

const pb::Vma* find_vma(const pb::MmState& mm, uint64_t addr) {
  auto it = std::upper_bound(mm.vmas().begin(), mm.vmas().end(), addr,
                             [](uint64_t a, const pb::Vma& v) { return a < v.start(); });
  if (it == mm.vmas().begin()) return nullptr;
  --it;
  return addr < it->end() ? &*it : nullptr;
}

// Where the pages go: the task, through the userfaultfd for the VMAs registered with it.
class Destination {
 public:
  Destination(Remote& task, const RestorePlan& plan) : plan_(plan), pid_(task.host_pid()) {
    uffd_ = TaskUserfaultfd::open(task);
    if (!uffd_) return;
    for (const auto& vma : plan.task.mm.vmas()) {
      if (vma.dumped() && is_private_anonymous(vma.kind()) && uffd_->register_range(vma.start(), vma.end() - vma.start()))
        by_uffd_.insert(vma.start());
    }
  }

  // One saved range: data, or zero pages (data empty).
  void put(uint64_t vaddr, uint64_t length, std::span<const std::byte> data, bool zero) {
    static const std::vector<std::byte> kZeros(1 << 20);
    for (uint64_t addr = vaddr; addr < vaddr + length;) {
      const pb::Vma* vma = find_vma(plan_.task.mm, addr);
      if (!vma) fail("{}: saved page {:#x} lies outside every VMA", plan_.dir.string(), addr);
      const uint64_t end = std::min(vma->end(), vaddr + length);
      if (zero) {
        // Fresh anonymous memory is zero already; a file page that was privately zeroed is not.
        if (is_file_backed(vma->kind())) {
          for (uint64_t a = addr; a < end; a += kZeros.size())
            ptrace::write_memory(pid_, a, std::span(kZeros).first(std::min<uint64_t>(kZeros.size(), end - a)));
        }
      } else {
        auto piece = data.subspan(addr - vaddr, end - addr);
        if (by_uffd_.count(vma->start())) {
          uffd_->copy(addr, piece);
          bytes_by_uffd_ += piece.size();
        } else {
          ptrace::write_memory(pid_, addr, piece);
        }
        bytes_ += piece.size();
      }
      addr = end;
    }
  }

  FillStats stats() const { return {bytes_ / 4096, bytes_, bytes_by_uffd_}; }

 private:
  const RestorePlan& plan_;
  pid_t pid_;
  std::unique_ptr<TaskUserfaultfd> uffd_;  // unregisters its ranges when we are done
  std::unordered_set<uint64_t> by_uffd_;   // starts of the VMAs registered with it
  std::atomic<uint64_t> bytes_{0}, bytes_by_uffd_{0};
};

}  // namespace

FillStats fill_pages(Remote& task, const RestorePlan& plan) {
  if (!plan.pages) fail("{}: the page file of pid {} was not opened", plan.dir.string(), plan.task.pid());
  const images::PageReader& pages = *plan.pages;
  // Tests change the page file here, after every up-front check, to show the change is caught.
  fault_pause("restore-before-fill");
  const auto& entries = pages.entries();
  const uint64_t page_size = pages.header().page_size();
  const size_t nr_chunks = pages.chunks().size();

  // On a terminal, a line that says how far the pages are (common/progress.h).
  progress::Display display("restore: memory", [&] {
    uint64_t total = 0;
    for (const auto& e : entries)
      if (!e.zero()) total += e.nr_pages() * page_size;  // the zero ranges go in at no cost
    return total;
  });
  Destination dest(task, plan);
  // Work items: every chunk, then the zero ranges.
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    try {
      std::unique_ptr<images::PageReader> reader = pages.share();
      for (size_t w; !failed && (w = next.fetch_add(1)) <= nr_chunks;) {
        check_interrupted("restore", "nothing was left behind");  // a fill of many GiB takes seconds
        if (w < nr_chunks) {
          // The chunk is checked before any of it goes in, from the very buffer it goes in
          // from; a bad one throws, and the restore is undone before the job ever runs.
          reader->stream_chunk(w, [&](uint64_t vaddr, std::span<const std::byte> data) {
            dest.put(vaddr, data.size(), data, false);
            progress::add(data.size());
          });
          continue;
        }
        for (const auto& e : entries)
          if (e.zero()) dest.put(e.vaddr(), e.nr_pages() * page_size, {}, true);
      }
    } catch (...) {
      std::lock_guard lock(error_mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  {
    // On every CPU, as long as the workers' buffers stay within a fixed budget: a restore's
    // memory does not grow with the checkpoint.
    constexpr uint64_t kBufferBudget = 32 << 20;
    const size_t cpus = std::max(1u, std::thread::hardware_concurrency());
    const size_t by_memory = std::max<uint64_t>(1, kBufferBudget / pages.stream_buffer_bytes());
    const size_t workers = std::min({cpus, by_memory, nr_chunks + 1});
    std::vector<std::jthread> threads;
    for (size_t t = 1; t < workers; ++t) threads.emplace_back(work);
    work();
  }
  if (error) std::rethrow_exception(error);
  return dest.stats();
}

}  // namespace stasis::restore
