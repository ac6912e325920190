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

#include "bench_util.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

using namespace bench;  // run, wait_progress, read_text... (bench_util.h)

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
    fs::remove(status);
    fs::remove(status.string() + ".tmp");
    fs::remove_all(root);  // the bench's own state root: its lock file is all that is left
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
