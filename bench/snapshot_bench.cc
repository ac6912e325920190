// Frozen time of `stasis dump --leave-running` (docs/dump.md, "Snapshots with
// --leave-running"): for each size, a container running bigmem with that much touched memory
// is dumped --repeat times with the pages copied after the thaw (now) and with every page
// copied while stopped (before: STASIS_FAULT=dump-no-background-copy), alternately; prints the
// best and worst frozen time of each, and the time the write-protection took.
//
//   snapshot_bench [--sizes 64,1024,4096] [--dir /dev/shm] [--repeat 3]
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

// Runs a shell command line; its output (stdout and stderr), and the exit status in *rc.
std::string sh(const std::string& command, int* rc = nullptr) {
  std::string out;
  FILE* f = ::popen((command + " 2>&1").c_str(), "r");
  if (!f) return out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  const int st = ::pclose(f);
  if (rc) *rc = st;
  return out;
}

double match(const std::string& text, const char* re) {
  std::smatch m;
  return std::regex_search(text, m, std::regex(re)) ? std::stod(m[1]) : -1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<unsigned> sizes{64, 1024, 4096};
  std::string dir = "/dev/shm";
  int repeat = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--sizes") {
      sizes.clear();
      std::stringstream ss(v);
      for (std::string s; std::getline(ss, s, ',');) sizes.push_back(static_cast<unsigned>(std::stoul(s)));
    } else if (a == "--dir") {
      dir = v;
    } else if (a == "--repeat") {
      repeat = std::stoi(v);
    } else {
      std::fprintf(stderr, "usage: snapshot_bench [--sizes 64,1024,4096] [--dir /dev/shm] [--repeat 3]\n");
      return 2;
    }
  }
  const fs::path build = fs::read_symlink("/proc/self/exe").parent_path().parent_path();
  const std::string stasis = (build / "stasis").string(), bigmem = (build / "tests/workloads/bigmem").string();
  char root_template[] = "/tmp/snapshot-bench-XXXXXX";
  if (!::mkdtemp(root_template)) return 1;
  const std::string root = root_template, base = stasis + " --root " + root;
  std::printf("%6s  %-22s  %-22s  %-22s\n", "MiB", "frozen before (s)", "frozen now (s)", "write-protect (s)");
  for (unsigned mib : sizes) {
    const std::string name = "snapbench" + std::to_string(mib), status = root + "/" + name + ".status";
    int rc = 0;
    std::string out = sh(base + " run -d --name " + name + " -- " + bigmem + " " + status + " " + std::to_string(mib), &rc);
    for (int i = 0; i < 600 && sh("cat " + status).rfind("ok", 0) != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::vector<double> before, now, protect;
    for (int r = 0; r < repeat && rc == 0; ++r) {
      for (bool background : {false, true}) {
        const std::string images = dir + "/snapshot-bench-images";
        out = sh(std::string(background ? "" : "STASIS_FAULT=dump-no-background-copy ") + base + " dump " + name +
                     " -D " + images + " --leave-running --compress none",
                 &rc);
        fs::remove_all(images);
        if (rc != 0) {
          std::fprintf(stderr, "snapshot_bench: dump of %u MiB failed: %s\n", mib, out.c_str());
          break;
        }
        (background ? now : before).push_back(match(out, "frozen ([0-9.]+)s"));
        if (background) protect.push_back(match(out, "write-protected at the freeze \\(([0-9.]+)s\\)"));
      }
    }
    sh(base + " rm -f " + name);
    auto range = [](std::vector<double> v) {
      if (v.empty()) return std::string("-");
      std::sort(v.begin(), v.end());
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.3f-%.3f", v.front(), v.back());
      return std::string(buf);
    };
    std::printf("%6u  %-22s  %-22s  %-22s\n", mib, range(before).c_str(), range(now).c_str(), range(protect).c_str());
    std::fflush(stdout);
  }
  fs::remove_all(root);
  return 0;
}
