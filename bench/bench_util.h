// What the benchmarks that drive `stasis` share: running a command with a time bound and
// its peak memory, and waiting for a workload's status file to show progress.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace bench {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Result {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
  double max_rss_mib = 0;  // peak RSS of the command (ru_maxrss)
};

// Runs argv with a time bound, capturing its output; kills it (by its pid) past the bound.
inline Result run(const std::vector<std::string>& argv, int timeout_s) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return {};
  pid_t pid = fork();
  if (pid < 0) return {};
  if (pid == 0) {
    dup2(p[1], 1);
    dup2(p[1], 2);
    int null_fd = open("/dev/null", O_RDONLY);
    dup2(null_fd, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(p[1]);
  Result r;
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  for (;;) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) {
      kill(pid, SIGKILL);
      r.out += "\n[bench: timed out]";
      break;
    }
    pollfd pfd{p[0], POLLIN, 0};
    if (poll(&pfd, 1, left) <= 0) continue;
    char buf[4096];
    ssize_t n = read(p[0], buf, sizeof buf);
    if (n <= 0) break;
    r.out.append(buf, static_cast<size_t>(n));
  }
  close(p[0]);
  int status = 0;
  struct rusage usage {};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  r.max_rss_mib = static_cast<double>(usage.ru_maxrss) / 1024;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

inline std::optional<uint64_t> read_progress(const fs::path& status) {
  std::ifstream in(status);
  std::string word;
  uint64_t n = 0;
  if (in >> word >> n && word == "ok") return n;
  return std::nullopt;
}

inline std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Waits for "ok P" with P > beyond; returns false on FAIL or timeout.
inline bool wait_progress(const fs::path& status, uint64_t beyond, int timeout_s, uint64_t* got = nullptr) {
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  while (Clock::now() < deadline) {
    std::string text = read_text(status);
    if (text.rfind("FAIL", 0) == 0) {
      fprintf(stderr, "bench: workload failed: %s", text.c_str());
      return false;
    }
    if (auto p = read_progress(status); p && *p > beyond) {
      if (got) *got = *p;
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  fprintf(stderr, "bench: no progress beyond %llu in %s within %d s\n", static_cast<unsigned long long>(beyond),
          status.c_str(), timeout_s);
  return false;
}

}  // namespace bench
