// Logging to stderr (and optionally a file). -v raises the level to debug.
#pragma once

#include <string>
#include <string_view>

#include <fmt/format.h>

namespace stasis::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

void set_level(Level level);
Level level();
// Also append every message to this file (all levels, with timestamps).
void set_file(const std::string& path);
// Whether messages at or above the level also go to stderr (the default). `stasis swrk` turns
// it off once it logs to the file its client named: its stderr may be the job's.
void set_stderr(bool on);
void write(Level level, std::string_view message);

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::Debug) write(Level::Debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::Info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::Warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::Error, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace stasis::log
