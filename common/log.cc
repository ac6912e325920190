#include "common/log.h"

#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>

namespace stasis::log {
namespace {
Level g_level = Level::Warn;
FILE* g_file = nullptr;
bool g_stderr = true;
std::mutex g_mutex;

const char* level_name(Level level) {
  switch (level) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warn: return "warning";
    case Level::Error: return "error";
  }
  return "?";
}
}  // namespace

void set_level(Level level) { g_level = level; }
Level level() { return g_level; }

void set_stderr(bool on) { g_stderr = on; }

void set_file(const std::string& path) {
  std::lock_guard lock(g_mutex);
  if (g_file) fclose(g_file);
  g_file = fopen(path.c_str(), "ae");
}

void write(Level lvl, std::string_view message) {
  std::lock_guard lock(g_mutex);
  if (g_stderr && lvl >= g_level) {
    if (lvl == Level::Info)
      fmt::print(stderr, "{}\n", message);
    else
      fmt::print(stderr, "stasis: {}: {}\n", level_name(lvl), message);
  }
  if (g_file) {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    fmt::print(g_file, "{}.{:06} [{}] {}: {}\n", ts.tv_sec, ts.tv_nsec / 1000, getpid(), level_name(lvl), message);
    fflush(g_file);
  }
}

}  // namespace stasis::log
