#include "launcher/mounts.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "common/error.h"

namespace stasis::launcher {

namespace fs = std::filesystem;

pb::BindMount parse_volume(const std::string& text) {
  auto bad = [&](const char* why) { return UsageError(fmt::format("-v '{}': {} (expected HOST:CONTAINER[:ro])", text, why)); };
  pb::BindMount m;
  size_t first = text.find(':');
  if (first == std::string::npos) throw bad("no ':' between the host and the container path");
  m.set_source(text.substr(0, first));
  std::string rest = text.substr(first + 1);
  size_t second = rest.find(':');
  m.set_target(rest.substr(0, second));
  if (second != std::string::npos) {
    std::string mode = rest.substr(second + 1);
    if (mode == "ro") m.set_read_only(true);
    else if (mode != "rw") throw bad("the mode after the second ':' must be ro or rw");
  }
  if (m.source().empty() || m.target().empty()) throw bad("empty path");
  return m;
}

void validate_mounts(pb::ContainerConfig& config) {
  for (auto& m : *config.mutable_mounts()) {
    std::string spec = fmt::format("{}:{}", m.source(), m.target());
    std::error_code ec;
    fs::path source = fs::canonical(m.source(), ec);
    if (ec) throw UsageError(fmt::format("-v {}: host path {}: {}", spec, m.source(), ec.message()));
    m.set_source(source.string());
    if (m.target()[0] != '/') throw UsageError(fmt::format("-v {}: the container path must be absolute", spec));
    if (fs::path(m.target()).lexically_normal() == "/") {
      throw UsageError(fmt::format("-v {}: cannot mount over the container's root (use --rootfs)", spec));
    }
    // On the host's file system the target is a host path: we do not create it there.
    if (config.rootfs().empty() && !fs::exists(m.target(), ec)) {
      throw UsageError(fmt::format("-v {}: {} does not exist (without --rootfs the container path is on the host's "
                                   "file system and must exist)", spec, m.target()));
    }
  }
}

void apply_bind_mounts(const pb::ContainerConfig& config, const std::string& root) {
  for (const auto& m : config.mounts()) {
    // lexically: a ".." must not climb out of the rootfs.
    fs::path target = fs::path(root.empty() ? "/" : root) / fs::path(m.target()).lexically_normal().relative_path();
    if (!root.empty()) {
      // A symbolic link in the tree is resolved here, before pivot_root: it must not lead out.
      std::error_code ec;
      const fs::path resolved = fs::weakly_canonical(target, ec), top = root;
      auto [end, _] = std::mismatch(top.begin(), top.end(), resolved.begin(), resolved.end());
      if (ec || end != top.end()) {
        fail("-v {}:{}: the container path leads out of the rootfs {}", m.source(), m.target(), root);
      }
    }
    if (!root.empty()) {
      std::error_code ec;
      if (fs::is_directory(m.source())) {
        fs::create_directories(target, ec);
      } else if (!fs::exists(target, ec)) {
        fs::create_directories(target.parent_path(), ec);
        int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) ::close(fd);
      }
    }
    check_sys(::mount(m.source().c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr), "bind-mount {} on {}",
              m.source(), target.string());
    if (m.read_only()) {
      // A bind mount takes its flags from a second, remounting call.
      check_sys(::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr),
                "make {} read-only", target.string());
    }
  }
}

}  // namespace stasis::launcher
