// A one-line progress display for long dumps and restores on a terminal: phase, bytes done of
// the total, rate and time left, redrawn in place by a thread of its own every 250 ms. The work
// itself only adds to a counter (progress::add, a relaxed atomic add per chunk of pages).
// Nothing is drawn when stderr is not a terminal, when disabled (--quiet), or when the phase
// ends within its first 300 ms (STASIS_PROGRESS_DELAY_MS overrides that, for tests).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace stasis::progress {

void set_enabled(bool enabled);  // default: enabled
void add(uint64_t bytes);        // bytes done in the current phase

class Display {
 public:
  // total: bytes the phase should reach (an estimate is fine: the figures are capped by it);
  // asked for by the display's thread, only when there is a line to draw.
  Display(std::string phase, std::function<uint64_t()> total);
  ~Display();  // stops the thread and clears the line
  Display(const Display&) = delete;
  Display& operator=(const Display&) = delete;

 private:
  std::jthread thread_;
};

}  // namespace stasis::progress
