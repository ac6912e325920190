// Helpers for the launcher tests: unique names, a per-test state root, and a guard that removes
// a container (rm -f) whatever happens in the test.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/test_util.h"

namespace stasis::test {

inline std::string unique_name(const std::string& tag) {
  static std::atomic<int> counter{0};
  return "lt" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

inline std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every cgroup directory a container named `name` could have, under any state root's parent
// ("stasis", "stasis-<hash>": launcher::cgroup_parent_for) in every hierarchy.
inline std::vector<std::filesystem::path> leftover_cgroups(const std::string& name) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (const auto& hierarchy : std::filesystem::directory_iterator("/sys/fs/cgroup", ec)) {
    std::error_code ec2;
    for (const auto& parent : std::filesystem::directory_iterator(hierarchy.path(), ec2)) {
      if (parent.path().filename().string().rfind("stasis", 0) != 0) continue;
      auto p = parent.path() / name;
      if (std::filesystem::exists(p, ec2)) out.push_back(p);
    }
  }
  return out;
}

class ContainerGuard {
 public:
  ContainerGuard(std::filesystem::path root, std::string name) : root_(std::move(root)), name_(std::move(name)) {}
  ~ContainerGuard() { run_stasis({"--root", root_.string(), "rm", "-f", name_}, std::chrono::seconds(20)); }

 private:
  std::filesystem::path root_;
  std::string name_;
};

// `stasis --root ROOT ARGS...`
inline CommandResult stasis_at(const TempDir& root, std::vector<std::string> args,
                               std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  args.insert(args.begin(), {"--root", root.path().string()});
  return run_stasis(args, timeout);
}

// A minimal tree: /bin/sh and the libraries it needs, copied from the host.
inline void make_rootfs(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  auto copy_in = [&](const fs::path& file) {
    fs::path dest = dir / file.relative_path();
    fs::create_directories(dest.parent_path());
    fs::copy_file(fs::canonical(file), dest, fs::copy_options::overwrite_existing);
    fs::permissions(dest, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
  };
  copy_in("/bin/sh");
  auto ldd = run_command({"ldd", "/bin/sh"});
  std::istringstream lines(ldd.out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string w;
    while (words >> w) {
      if (w[0] == '/') copy_in(w);
    }
  }
  for (const char* d : {"proc", "dev", "tmp", "etc"}) fs::create_directories(dir / d);
}

}  // namespace stasis::test
