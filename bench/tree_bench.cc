// Dump and restore time of a process tree as it grows: a container running tree_fanout with
// 1, 10 and 100 processes, each with 8 MiB of touched memory, dumped and restored --repeat
// times (best kept), with the time each process adds beyond the first.
//
//   tree_bench [--processes 1,10,100] [--mib 8] [--dir /tmp] [--stasis PATH] [--workload PATH]
//              [--repeat 2]
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Result {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
  double max_rss_mib = 0;  // peak RSS of the command (ru_maxrss)
};

// Runs argv with a time bound, capturing its output; kills it (by its pid) past the bound.
Result run(const std::vector<std::string>& argv, int timeout_s) {
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

std::optional<uint64_t> read_progress(const fs::path& status) {
  std::ifstream in(status);
  std::string word;
  uint64_t n = 0;
  if (in >> word >> n && word == "ok") return n;
  return std::nullopt;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Waits for "ok P" with P > beyond; returns false on FAIL or timeout.
bool wait_progress(const fs::path& status, uint64_t beyond, int timeout_s, uint64_t* got = nullptr) {
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

struct Figures {
  double dump_s = 1e9, restore_s = 1e9;
};

// One run: start, dump, restore, check, remove. Returns nullopt on failure (printed).
std::optional<Figures> cycle(const std::string& stasis, const std::string& workload, const fs::path& dir, int processes,
                             int mib, int round) {
  const fs::path root = dir / "tree-bench-root";
  const fs::path images = dir / "tree-bench-images";
  const fs::path status = dir / "tree-bench.status";
  fs::remove_all(images);
  fs::remove(status);
  const std::string name = "tree-bench-" + std::to_string(processes) + "-" + std::to_string(round);
  const std::string restored = name + "-r";
  auto cleanup = [&] {
    run({stasis, "--root", root.string(), "rm", "-f", name, restored}, 30);
    fs::remove_all(images);
  };
  Result r = run({stasis, "--root", root.string(), "run", "-d", "--name", name, "--", workload, status.string(),
                  std::to_string(processes), std::to_string(mib)},
                 60);
  uint64_t n = 0;
  if (r.exit_code != 0 || !wait_progress(status, 0, 120, &n)) {
    fprintf(stderr, "tree_bench: run failed: %s\n", r.out.c_str());
    cleanup();
    return std::nullopt;
  }
  // Every child has its memory filled once the parent has gone round a few times more.
  std::this_thread::sleep_for(std::chrono::milliseconds(200 + processes * 10));
  Figures f;
  auto t0 = Clock::now();
  r = run({stasis, "--root", root.string(), "dump", name, "-D", images.string(), "--compress", "none"}, 300);
  f.dump_s = seconds_since(t0);
  if (r.exit_code != 0) {
    fprintf(stderr, "tree_bench: dump failed: %s\n", r.out.c_str());
    cleanup();
    return std::nullopt;
  }
  if (auto p = read_progress(status)) n = *p;
  t0 = Clock::now();
  r = run({stasis, "--root", root.string(), "restore", "-D", images.string(), "--name", restored, "-d"}, 300);
  f.restore_s = seconds_since(t0);
  if (r.exit_code != 0 || !wait_progress(status, n + 5, 60)) {
    fprintf(stderr, "tree_bench: restore failed: %s\n", r.out.c_str());
    cleanup();
    return std::nullopt;
  }
  cleanup();
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> counts{1, 10, 100};
  int mib = 8, repeat = 2;
  fs::path dir = "/tmp";
  const fs::path self = fs::canonical("/proc/self/exe").parent_path();
  std::string stasis = (self.parent_path() / "stasis").string();
  std::string workload = (self.parent_path() / "tests/workloads/tree_fanout").string();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string opt = argv[i], value = argv[i + 1];
    if (opt == "--processes") {
      counts.clear();
      std::stringstream in(value);
      for (std::string item; std::getline(in, item, ',');) counts.push_back(std::stoi(item));
    } else if (opt == "--mib") mib = std::stoi(value);
    else if (opt == "--dir") dir = value;
    else if (opt == "--stasis") stasis = value;
    else if (opt == "--workload") workload = value;
    else if (opt == "--repeat") repeat = std::stoi(value);
    else {
      fprintf(stderr, "usage: tree_bench [--processes 1,10,100] [--mib 8] [--dir /tmp] [--stasis PATH] "
                      "[--workload PATH] [--repeat 2]\n");
      return 2;
    }
  }
  printf("processes  MiB each |   dump s  restore s | per extra process: dump ms  restore ms\n");
  std::optional<Figures> first;
  int first_count = 0;
  for (int count : counts) {
    Figures best;
    bool ok = false;
    for (int k = 0; k < repeat; ++k) {
      if (auto f = cycle(stasis, workload, dir, count, mib, k)) {
        best.dump_s = std::min(best.dump_s, f->dump_s);
        best.restore_s = std::min(best.restore_s, f->restore_s);
        ok = true;
      }
    }
    if (!ok) return 1;
    if (!first) {
      first = best;
      first_count = count;
      printf("%9d  %8d | %8.3f  %9.3f |\n", count, mib, best.dump_s, best.restore_s);
    } else {
      const double extra = count - first_count;
      printf("%9d  %8d | %8.3f  %9.3f | %25.1f  %10.1f\n", count, mib, best.dump_s, best.restore_s,
             (best.dump_s - first->dump_s) * 1000 / extra, (best.restore_s - first->restore_s) * 1000 / extra);
    }
    fflush(stdout);
  }
  return 0;
}
