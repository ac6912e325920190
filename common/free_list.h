// Spare objects kept for reuse by later owners, up to a limit: page buffers that a tree's
// processes use one after another, which fresh would be faulted in and zeroed by the kernel
// again for each process, as much memory traffic as the copy they serve.
#pragma once

#include <cstddef>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace stasis {

template <typename T>
class FreeList {
 public:
  explicit FreeList(size_t limit) : limit_(limit) {}
  FreeList(const FreeList&) = delete;
  FreeList& operator=(const FreeList&) = delete;

  // A spare one, if any.
  std::optional<T> take() {
    std::lock_guard lock(mutex_);
    if (items_.empty()) return std::nullopt;
    std::optional<T> item(std::move(items_.back()));
    items_.pop_back();
    return item;
  }
  // Keeps item unless the list is full; false then, and item is left to the caller to free.
  bool give(T& item) {
    std::lock_guard lock(mutex_);
    if (items_.size() >= limit_) return false;
    items_.push_back(std::move(item));
    return true;
  }

 private:
  const size_t limit_;
  std::mutex mutex_;
  std::vector<T> items_;
};

}  // namespace stasis
