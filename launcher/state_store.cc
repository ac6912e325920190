#include "launcher/state_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>


#include "common/error.h"
#include "common/file_util.h"
#include "proto/reflection.h"

namespace stasis::launcher {

namespace fs = std::filesystem;

std::string state_to_json(const pb::ContainerState& state) { return pb::to_json(state, {.pretty = true}); }

namespace {

pb::ContainerState state_from_file(const fs::path& path) {
  pb::ContainerState state;
  if (!state.ParseFromString(read_file(path))) fail("corrupt state file {}", path.string());
  return state;
}

}  // namespace

StateStore::StateStore(fs::path root) : root_(std::move(root)) {
  if (root_.empty()) throw UsageError("--root must not be empty");
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) fail("create state root {}: {}", root_.string(), ec.message());
  if (!fs::is_directory(root_)) fail("state root {} is not a directory", root_.string());
}

fs::path StateStore::state_path(const std::string& name) const { return root_ / (name + ".state"); }
fs::path StateStore::default_log_path(const std::string& name) const { return root_ / (name + ".log"); }

std::optional<pb::ContainerState> StateStore::try_load(const std::string& name) const {
  fs::path path = state_path(name);
  if (name.empty() || name.find('/') != std::string::npos || !fs::exists(path)) return std::nullopt;
  return state_from_file(path);
}

pb::ContainerState StateStore::load(const std::string& name) const {
  auto state = try_load(name);
  if (!state) fail("no container named {} under {}", name, root_.string());
  return *state;
}

void StateStore::save(const pb::ContainerState& state) const {
  // No fsync: this is runtime state (like /run, gone with a reboot, as are the containers);
  // an fsync costs milliseconds per save on a disk-backed root.
  std::string bytes;
  if (!state.SerializeToString(&bytes)) fail("encode state of container {}", state.config().name());
  write_file_atomic(state_path(state.config().name()), bytes, false);
}

void StateStore::remove(const std::string& name) const {
  if (::unlink(state_path(name).c_str()) != 0 && errno != ENOENT) {
    fail_errno(errno, "remove {}", state_path(name).string());
  }
}

std::vector<pb::ContainerState> StateStore::list() const {
  std::vector<pb::ContainerState> out;
  for (const auto& entry : fs::directory_iterator(root_)) {
    const fs::path& p = entry.path();
    if (p.extension() != ".state" || p.filename().string()[0] == '.') continue;
    try {
      out.push_back(state_from_file(p));
    } catch (const Error&) {
      // A file being replaced or foreign: skip it rather than fail the listing.
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.config().name() < b.config().name(); });
  return out;
}

StateStore::Lock::Lock(const StateStore& store) {
  fs::path path = store.root() / ".lock";
  fd_ = open_or_throw(path, O_RDWR | O_CREAT, 0600);
  while (::flock(fd_.get(), LOCK_EX) != 0) {
    if (errno != EINTR) fail_errno(errno, "flock {}", path.string());
  }
}

bool StateStore::update(const std::string& name, const std::function<void(pb::ContainerState&)>& fn) const {
  Lock lock(*this);
  auto state = try_load(name);
  if (!state) return false;
  fn(*state);
  save(*state);
  return true;
}

}  // namespace stasis::launcher
