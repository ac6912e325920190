#include "restore/page_fill.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/error.h"
#include "common/fault.h"
#include "common/interrupt.h"
#include "common/progress.h"
#include "common/ptrace.h"
#include "common/work_pool.h"
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
  // Tests change the page file here, after every up-front check, to show the change is caught.
  fault_pause("restore-before-fill");

  // The page files to read: the checkpoint's own, whole, then (incremental checkpoints) each
  // parent's, only for the ranges it is the newest to have (images/page_chain.h). No page is
  // in two of them, so each goes in once.
  struct Source {
    const images::PageReader* pages;
    const images::RangeSet* only;  // nullptr: everything
    std::vector<size_t> chunks;    // the chunks to read
  };
  std::vector<Source> sources;
  sources.push_back({plan.pages.get(), nullptr, {}});
  for (const auto& p : plan.parent_pages) sources.push_back({p.pages.get(), &p.take, {}});
  struct Item {
    size_t source;
    std::optional<size_t> chunk;  // nothing: the source's zero ranges
  };
  std::vector<Item> items;
  uint64_t total = 0;
  for (size_t s = 0; s < sources.size(); ++s) {
    Source& src = sources[s];
    const auto& entries = src.pages->entries();
    const uint64_t ps = src.pages->header().page_size();
    for (size_t c = 0; c < src.pages->chunks().size(); ++c) {
      bool wanted = !src.only;
      for (size_t i : src.pages->chunk_entries(c)) {
        const auto& e = entries[i];
        if (!src.only) total += e.nr_pages() * ps;
        else src.only->inside(e.vaddr(), e.vaddr() + e.nr_pages() * ps, [&](uint64_t a, uint64_t b) {
          wanted = true;
          total += b - a;
        });
      }
      if (wanted) items.push_back({s, c});
    }
    items.push_back({s, std::nullopt});
  }

  // On a terminal, a line that says how far the pages are (common/progress.h).
  progress::Display display("restore: memory", [total] { return total; });
  Destination dest(task, plan);
  // On every CPU, as long as the workers' buffers stay within a fixed budget: a restore's
  // memory does not grow with the checkpoint.
  constexpr uint64_t kBufferBudget = 32 << 20;
  uint64_t buffers = 0;
  for (const auto& src : sources) buffers += src.pages->stream_buffer_bytes();
  const size_t cpus = std::max(1u, std::thread::hardware_concurrency());
  const size_t by_memory = std::max<uint64_t>(1, kBufferBudget / std::max<uint64_t>(buffers, 1));
  const size_t workers = std::min(cpus, by_memory);
  // Each worker reads through readers of its own.
  std::vector<std::vector<std::unique_ptr<images::PageReader>>> readers(workers);
  for (auto& r : readers) r.resize(sources.size());
  for_each_on_threads(items.size(), workers, [&](size_t worker, size_t w) {
    check_interrupted("restore", "nothing was left behind");  // a fill of many GiB takes seconds
    const Item& item = items[w];
    const Source& src = sources[item.source];
    const uint64_t ps = src.pages->header().page_size();
    auto put = [&](uint64_t vaddr, uint64_t length, std::span<const std::byte> data, bool zero) {
      if (!src.only) {
        dest.put(vaddr, length, data, zero);
        return;
      }
      src.only->inside(vaddr, vaddr + length, [&](uint64_t a, uint64_t b) {
        dest.put(a, b - a, zero ? data : data.subspan(a - vaddr, b - a), zero);
      });
    };
    if (item.chunk) {
      auto& reader = readers[worker][item.source];
      if (!reader) reader = src.pages->share();
      // The chunk is checked before any of it goes in, from the very buffer it goes in
      // from; a bad one throws, and the restore is undone before the job ever runs.
      reader->stream_chunk(*item.chunk, [&](uint64_t vaddr, std::span<const std::byte> data) {
        put(vaddr, data.size(), data, false);
        progress::add(data.size());
      });
      return;
    }
    for (const auto& e : src.pages->entries())
      if (e.zero()) put(e.vaddr(), e.nr_pages() * ps, {}, true);
  });
  return dest.stats();
}

}  // namespace stasis::restore
