#include "dump/volumes.h"

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <sstream>

#include "common/error.h"
#include "common/file_util.h"

namespace stasis::dump {

namespace fs = std::filesystem;

namespace {

// The -v target that path lies on (itself or below), or nullptr.
const pb::BindMount* volume_of(const pb::ContainerConfig& config, const std::string& path) {
  if (path.empty() || path[0] != '/') return nullptr;  // pipe:[..], anon_inode:..., socket:[..]
  const fs::path p = fs::path(path).lexically_normal();
  for (const auto& m : config.mounts()) {
    const fs::path target = fs::path(m.target()).lexically_normal();
    auto [end, _] = std::mismatch(target.begin(), target.end(), p.begin(), p.end());
    if (end == target.end() || (std::next(end) == target.end() && end->empty())) return &m;
  }
  return nullptr;
}

}  // namespace

void refuse_files_in_volumes(pid_t pid, const pb::ContainerConfig& config) {
  if (config.mounts_size() == 0) return;
  const fs::path proc = fs::path("/proc") / std::to_string(pid);
  auto message = [&](const std::string& what, const std::string& path, const pb::BindMount& m) {
    return fmt::format(
        "pid {}: {} {} is on the bind mount -v {}:{}; files reached through a -v mount cannot be restored: "
        "close it in the job, or run the job without that mount; the job was left running",
        pid, what, path, m.source(), m.target());
  };
  auto refuse = [&](const std::string& what, const std::string& path, const pb::BindMount& m) {
    throw UnsupportedError(message(what, path, m));
  };
  std::error_code ec;
  for (const auto& [what, link] : {std::pair<std::string, fs::path>{"its working directory", proc / "cwd"},
                                   {"its executable", proc / "exe"}}) {
    fs::path target = fs::read_symlink(link, ec);
    if (ec) continue;
    if (const auto* m = volume_of(config, target.string())) refuse(what, target.string(), *m);
  }
  for (const auto& entry : fs::directory_iterator(proc / "fd", ec)) {
    std::error_code link_ec;
    fs::path target = fs::read_symlink(entry.path(), link_ec);
    if (link_ec) continue;
    // An fd may be open for a moment (a file written, then closed): the dump tries again.
    if (const auto* m = volume_of(config, target.string()))
      throw PassingStateError(message(fmt::format("fd {}:", entry.path().filename().string()), target.string(), *m));
  }
  // Mapped files: the path is the last field of /proc/PID/maps, from its first '/'.
  std::istringstream maps(read_file(proc / "maps"));
  for (std::string line; std::getline(maps, line);) {
    size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (const auto* m = volume_of(config, path)) refuse("a mapping of", path, *m);
  }
}

}  // namespace stasis::dump
