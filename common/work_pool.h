// Work shared out over threads: items handed out in order by a counter, each to the next free
// thread. The first exception stops the handing out (items already taken finish) and is
// rethrown once every thread is done, so a failure leaves no thread behind.
#pragma once

#include <cstddef>
#include <functional>

namespace stasis {

// Calls each(worker, item) for every item in [0, count) on up to `workers` threads, the
// caller's among them (worker 0); worker numbers are below min(workers, count), for state of
// each thread's own.
void for_each_on_threads(size_t count, size_t workers, const std::function<void(size_t worker, size_t item)>& each);

}  // namespace stasis
