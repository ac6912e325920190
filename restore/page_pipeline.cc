#include "restore/page_pipeline.h"

#include "images/page_file.h"

namespace stasis::restore {

PagePipeline::PagePipeline(std::filesystem::path dir, int64_t id, size_t depth)
    : dir_(std::move(dir)), id_(id), depth_(depth) {
  reader_ = std::thread([this] { read_all(); });
}

PagePipeline::~PagePipeline() {
  {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
  }
  changed_.notify_all();
  reader_.join();
}

void PagePipeline::read_all() {
  try {
    images::PageReader reader(dir_, id_);
    reader.for_each([this](uint64_t vaddr, uint64_t length, std::span<const std::byte> data, bool zero) {
      Range range{vaddr, length, zero, take_buffer()};
      range.data.assign(data.begin(), data.end());
      {
        std::lock_guard lock(mutex_);
        ready_.push_back(std::move(range));
      }
      changed_.notify_all();
    });
  } catch (const Cancelled&) {
    // The consumer is gone: nothing to report.
  } catch (...) {
    std::lock_guard lock(mutex_);
    error_ = std::current_exception();
  }
  {
    std::lock_guard lock(mutex_);
    done_ = true;
  }
  changed_.notify_all();
}

std::vector<std::byte> PagePipeline::take_buffer() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return cancelled_ || ready_.size() < depth_; });
  if (cancelled_) throw Cancelled{};
  if (spare_.empty()) return {};
  std::vector<std::byte> buffer = std::move(spare_.back());
  spare_.pop_back();
  return buffer;
}

std::optional<PagePipeline::Range> PagePipeline::next() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return !ready_.empty() || done_; });
  if (!ready_.empty()) {
    Range range = std::move(ready_.front());
    ready_.pop_front();
    lock.unlock();
    changed_.notify_all();
    return range;
  }
  if (error_) std::rethrow_exception(error_);
  return std::nullopt;
}

void PagePipeline::recycle(Range&& range) {
  std::lock_guard lock(mutex_);
  if (spare_.size() < depth_ + 1) spare_.push_back(std::move(range.data));
}

}  // namespace stasis::restore
