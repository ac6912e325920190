#include "restore/page_fill.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/error.h"
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
  const images::PageReader::Options options{.mapped = true, .check_data = false};
  const int64_t id = plan.task.pid();
  images::PageReader first(plan.dir, id, options);
  const auto& entries = first.entries();
  // Work comes in groups of entries that share a chunk, so that each chunk is decompressed once.
  std::vector<size_t> group_starts;
  std::optional<uint64_t> chunk;  // of the current group
  for (size_t i = 0; i < entries.size(); ++i) {
    if (group_starts.empty() || (!entries[i].zero() && chunk && *chunk != entries[i].chunk_offset()))
      group_starts.push_back(i);
    if (!entries[i].zero()) chunk = entries[i].chunk_offset();
  }
  group_starts.push_back(entries.size());

  Destination dest(task, plan);
  std::atomic<size_t> next_group{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&](images::PageReader& reader) {
    try {
      for (size_t g; !failed && (g = next_group.fetch_add(1)) + 1 < group_starts.size();) {
        for (size_t i = group_starts[g]; i < group_starts[g + 1]; ++i) {
          const auto& e = entries[i];
          const uint64_t length = e.nr_pages() * first.header().page_size();
          if (e.zero()) dest.put(e.vaddr(), length, {}, true);
          else dest.put(e.vaddr(), length, reader.data(i), false);
        }
      }
    } catch (...) {
      std::lock_guard lock(error_mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  {
    const size_t helpers = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 4) - 1;
    std::vector<std::jthread> threads;
    for (size_t t = 0; t < helpers && t + 1 < group_starts.size() - 1; ++t) {
      threads.emplace_back([&] {
        try {
          images::PageReader reader(plan.dir, id, options);
          work(reader);
        } catch (...) {
          std::lock_guard lock(error_mutex);
          if (!error) error = std::current_exception();
          failed = true;
        }
      });
    }
    work(first);
  }
  if (error) std::rethrow_exception(error);
  return dest.stats();
}

}  // namespace stasis::restore
