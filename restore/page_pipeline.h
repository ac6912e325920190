// Streams a page file on a second thread: reading, checking and decompressing the next ranges
// while the caller writes the current ones into the task, so the two halves of restoring
// memory run on two CPUs. At most `depth` ranges (each at most one chunk) wait in between.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace stasis::restore {

class PagePipeline {
 public:
  struct Range {
    uint64_t vaddr = 0;
    uint64_t length = 0;
    bool zero = false;            // all-zero pages: no data
    std::vector<std::byte> data;  // the bytes, for the others
  };

  PagePipeline(std::filesystem::path dir, int64_t id, size_t depth = 4);
  ~PagePipeline();  // stops the reader and waits for it
  PagePipeline(const PagePipeline&) = delete;
  PagePipeline& operator=(const PagePipeline&) = delete;

  // The next range in file order, or nothing at the end. Rethrows the reader's error.
  std::optional<Range> next();
  // Hands a used range's buffer back, so the reader does not allocate for every range.
  void recycle(Range&& range);

 private:
  struct Cancelled {};
  void read_all();
  std::vector<std::byte> take_buffer();  // waits while `depth` ranges are queued

  std::filesystem::path dir_;
  int64_t id_;
  size_t depth_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Range> ready_;
  std::vector<std::vector<std::byte>> spare_;
  bool done_ = false;
  bool cancelled_ = false;
  std::exception_ptr error_;
  std::thread reader_;
};

}  // namespace stasis::restore
