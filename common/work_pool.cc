#include "common/work_pool.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace stasis {

void for_each_on_threads(size_t count, size_t workers, const std::function<void(size_t worker, size_t item)>& each) {
  workers = std::max<size_t>(1, std::min(workers, count));
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&](size_t worker) {
    try {
      for (size_t item; (item = next.fetch_add(1)) < count;) each(worker, item);
    } catch (...) {
      std::lock_guard lock(error_mutex);
      if (!error) error = std::current_exception();
      next = count;  // the others stop after their current item
    }
  };
  {
    std::vector<std::jthread> threads;
    for (size_t w = 1; w < workers; ++w) threads.emplace_back(work, w);
    work(0);
  }  // joined
  if (error) std::rethrow_exception(error);
}

}  // namespace stasis
