// Checkpoint directories: create, finalize (inventory with every file's size and XXH3),
// open and verify.
#include "images/checkpoint.h"

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "common/error.h"
#include "common/file_util.h"
#include "common/version.h"
#include "images/host_info.h"
#include "images/image_file.h"

namespace stasis::images {

namespace fs = std::filesystem;

namespace {

struct FileSum {
  uint64_t size = 0;
  std::string xxh3;
};

// Streams the file through XXH3-64 in 1 MiB reads.
FileSum checksum_file(const fs::path& path) {
  UniqueFd fd = open_or_throw(path, O_RDONLY);
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(), &XXH3_freeState);
  if (!state) fail("checksum {}: out of memory", path.string());
  XXH3_64bits_reset(state.get());
  std::vector<char> buf(1 << 20);
  FileSum out;
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(errno, "read {}", path.string());
    }
    if (n == 0) break;
    XXH3_64bits_update(state.get(), buf.data(), static_cast<size_t>(n));
    out.size += static_cast<uint64_t>(n);
  }
  out.xxh3 = fmt::format("{:016x}", XXH3_64bits_digest(state.get()));
  return out;
}

const std::string kInventoryName = image_file_name(ImageType::Inventory);

}  // namespace

Checkpoint Checkpoint::create(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) fail("checkpoint directory {}: exists and is not a directory", dir.string());
    if (!fs::is_empty(dir, ec)) fail("checkpoint directory {}: exists and is not empty", dir.string());
  } else {
    fs::create_directories(dir, ec);
    if (ec) fail("create checkpoint directory {}: {}", dir.string(), ec.message());
  }
  return Checkpoint(dir);
}

Checkpoint Checkpoint::open(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail("checkpoint directory {} does not exist", dir.string());
  if (!fs::is_directory(dir, ec)) fail("checkpoint {}: not a directory", dir.string());
  Checkpoint cp(dir);
  fs::path inv = dir / kInventoryName;
  if (!fs::exists(inv, ec)) {
    fail("checkpoint {}: no {} (not a checkpoint, or its dump did not finish)", dir.string(), kInventoryName);
  }
  with_context(fmt::format("checkpoint {}: bad inventory", dir.string()),
               [&] { read_single(inv, ImageType::Inventory, cp.inventory_); });
  if (cp.inventory_.format_version() > kFormatVersion) {
    fail("checkpoint {}: format version {} is newer than this stasis reads ({})", dir.string(),
         cp.inventory_.format_version(), kFormatVersion);
  }
  return cp;
}

fs::path Checkpoint::path(ImageType type, std::optional<int64_t> id) const { return dir_ / image_file_name(type, id); }

bool Checkpoint::exists(ImageType type, std::optional<int64_t> id) const {
  std::error_code ec;
  return fs::exists(path(type, id), ec);
}

void Checkpoint::finalize(pb::Inventory inventory) {
  inventory.set_format_version(kFormatVersion);
  inventory.set_tool_version(std::string(kVersion));
  struct utsname u {};
  if (::uname(&u) < 0) fail_errno(errno, "uname");
  inventory.set_kernel_release(u.release);
  inventory.set_machine(u.machine);
  inventory.set_xsave_features(xsave_features());
  inventory.set_xsave_size(xsave_size());
  inventory.set_created_unix_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count());
  if (inventory.page_size() == 0) inventory.set_page_size(static_cast<uint32_t>(::sysconf(_SC_PAGESIZE)));

  // Every other regular file, by name, so the inventory is the same whatever readdir's order.
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name == kInventoryName || name == kInventoryName + ".tmp") continue;
    if (!it->is_regular_file()) continue;
    names.push_back(std::move(name));
  }
  if (ec) fail("list checkpoint directory {}: {}", dir_.string(), ec.message());
  std::sort(names.begin(), names.end());
  inventory.clear_images();
  for (const auto& name : names) {
    FileSum sum = checksum_file(dir_ / name);
    pb::ImageChecksum* c = inventory.add_images();
    c->set_name(name);
    c->set_size(sum.size);
    c->set_xxh3(sum.xxh3);
  }

  // Written aside then renamed: a directory holds a complete inventory or none.
  fs::path tmp = dir_ / (kInventoryName + ".tmp");
  write_single(tmp, ImageType::Inventory, inventory);
  if (::rename(tmp.c_str(), (dir_ / kInventoryName).c_str()) < 0) {
    fail_errno(errno, "rename {} to {}", tmp.string(), kInventoryName);
  }
  inventory_ = std::move(inventory);
}

void Checkpoint::verify() const {
  for (const auto& image : inventory_.images()) verify_file(image.name());
}

void Checkpoint::verify_file(const std::string& name) const {
  const pb::ImageChecksum* entry = nullptr;
  for (const auto& image : inventory_.images()) {
    if (image.name() == name) {
      entry = &image;
      break;
    }
  }
  if (!entry) fail("checkpoint {}: {} is not listed in the inventory", dir_.string(), name);
  fs::path p = dir_ / name;
  std::error_code ec;
  if (!fs::exists(p, ec)) fail("checkpoint {}: {} is missing", dir_.string(), name);
  uint64_t size = fs::file_size(p, ec);
  if (ec) fail("checkpoint {}: stat {}: {}", dir_.string(), name, ec.message());
  if (size != entry->size()) {
    fail("checkpoint {}: {} has {} bytes, the inventory says {}", dir_.string(), name, size, entry->size());
  }
  FileSum sum = checksum_file(p);
  if (sum.size != entry->size()) {
    fail("checkpoint {}: {} has {} bytes, the inventory says {}", dir_.string(), name, sum.size, entry->size());
  }
  if (sum.xxh3 != entry->xxh3()) {
    fail("checkpoint {}: {} checksum mismatch (XXH3 {}, the inventory says {})", dir_.string(), name, sum.xxh3,
         entry->xxh3());
  }
}

}  // namespace stasis::images
