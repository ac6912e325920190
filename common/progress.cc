#include "common/progress.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <mutex>

#include <fmt/format.h>

namespace stasis::progress {

namespace {

std::atomic<bool> g_enabled{true};
std::atomic<uint64_t> g_done{0};

void put(const std::string& text) {
  if (::write(STDERR_FILENO, text.data(), text.size()) < 0) {
    // A terminal that is gone: nothing to tell.
  }
}

std::string mib(uint64_t bytes) { return fmt::format("{:.1f}", static_cast<double>(bytes) / (1 << 20)); }

}  // namespace

void set_enabled(bool enabled) { g_enabled.store(enabled, std::memory_order_relaxed); }

void add(uint64_t bytes) { g_done.fetch_add(bytes, std::memory_order_relaxed); }

Display::Display(std::string phase, std::function<uint64_t()> total_fn) {
  g_done.store(0, std::memory_order_relaxed);
  if (!g_enabled.load(std::memory_order_relaxed) || !::isatty(STDERR_FILENO)) return;
  int delay_ms = 300;
  if (const char* env = std::getenv("STASIS_PROGRESS_DELAY_MS")) delay_ms = std::atoi(env);
  thread_ = std::jthread([phase = std::move(phase), total_fn = std::move(total_fn), delay_ms](std::stop_token stop) {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    // Short phases draw nothing.
    if (cv.wait_for(lock, stop, std::chrono::milliseconds(delay_ms), [] { return false; })) return;
    if (stop.stop_requested()) return;
    const uint64_t total = total_fn();
    if (total == 0) return;
    bool drawn = false;
    while (!stop.stop_requested()) {
      const uint64_t done = std::min(g_done.load(std::memory_order_relaxed), total);
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
      std::string line = fmt::format("\r{}: {} / {} MiB ({:.0f}%)", phase, mib(done), mib(total),
                                     100.0 * static_cast<double>(done) / static_cast<double>(total));
      if (done > 0) {
        line += fmt::format(", {} MiB/s, {:.0f} s left", mib(static_cast<uint64_t>(rate)),
                            static_cast<double>(total - done) / rate);
      }
      line += "\x1b[K";  // erase what a longer line before left
      put(line);
      drawn = true;
      cv.wait_for(lock, stop, std::chrono::milliseconds(250), [] { return false; });
    }
    if (drawn) put("\r\x1b[K");
  });
}

Display::~Display() = default;  // jthread: request_stop, then join

}  // namespace stasis::progress
