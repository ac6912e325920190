// Checkpoint directories: create, finalize (inventory with every file's size and XXH3),
// open and verify.
#include "images/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/fast_hash.h"
#include "common/file_util.h"
#include "common/version.h"
#include "common/work_pool.h"
#include "images/host_info.h"
#include "images/format.h"
#include "images/image_file.h"
#include "images/page_format.h"

namespace stasis::images {

namespace fs = std::filesystem;

namespace {

void read_exact_at(int fd, void* out, size_t size, uint64_t offset, const fs::path& path) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, static_cast<char*>(out) + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(errno, "read {} at offset {}", path.string(), offset + done);
    if (n == 0) throw Error(format::at(path, offset + done, "unexpected end of file"));
    done += static_cast<size_t>(n);
  }
}

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
  // Most images are a few hundred bytes: a buffer their size, not a zeroed MiB for each.
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) fail_errno(errno, "stat {}", path.string());
  const size_t size = static_cast<size_t>(std::clamp<off_t>(st.st_size + 1, 1, 1 << 20));
  auto buf = std::make_unique_for_overwrite<char[]>(size);
  FileSum out;
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.get(), size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(errno, "read {}", path.string());
    }
    if (n == 0) break;
    XXH3_64bits_update(state.get(), buf.get(), static_cast<size_t>(n));
    out.size += static_cast<uint64_t>(n);
  }
  out.xxh3 = fmt::format("{:016x}", XXH3_64bits_digest(state.get()));
  return out;
}

// Checks every chunk's data against the XXH3 in its header, on up to four threads, each
// reading a chunk at a time into a buffer of its own (memory stays bounded by the chunk size
// whatever the file's size, and the page cache is not charged to us as a mapping of it would
// be), hashed in one pass (twice as fast as XXH3's streaming interface).
void check_chunk_data(int fd, const fs::path& path, const std::vector<PageChunk>& chunks) {
  const size_t workers = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 4);
  std::vector<std::vector<std::byte>> buffers(workers);
  for_each_on_threads(chunks.size(), workers, [&](size_t worker, size_t i) {
    const PageChunk& c = chunks[i];
    std::vector<std::byte>& buf = buffers[worker];
    buf.resize(c.stored_size);
    read_exact_at(fd, buf.data(), c.stored_size, c.offset + page_format::kChunkHeaderSize, path);
    if (xxh3_64(buf.data(), c.stored_size) != c.sum)
      throw Error(format::at(path, c.offset, "chunk: data checksum mismatch"));
  });
}

// A page file's checksum is not over its bytes but over its file header and every chunk
// header, each of which holds the XXH3 of its chunk's data (and of itself): as strong, but the
// dump can seal a page file by reading 32 bytes per chunk instead of the whole file again, and
// a restore can check the headers before it starts and each chunk's data as it fills it.
// With check_data, every chunk's data is read and checked against its header as well.
FileSum page_file_sum(const fs::path& path, bool check_data) {
  UniqueFd fd = open_or_throw(path, O_RDONLY);
  PageFileLayout layout = read_page_file_layout(fd.get(), path);
  if (check_data && !layout.chunks.empty()) check_chunk_data(fd.get(), path, layout.chunks);
  return FileSum{layout.size, fmt::format("{:016x}", layout.seal)};
}

bool is_page_file(const std::string& name) {
  auto parsed = parse_image_file_name(name);
  return parsed && parsed->type == ImageType::Pages;
}

FileSum image_sum(const fs::path& path, bool check_data) {
  return is_page_file(path.filename().string()) ? page_file_sum(path, check_data) : checksum_file(path);
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
    FileSum sum = image_sum(dir_ / name, /*check_data=*/false);
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

void Checkpoint::verify(PageData page_data) const {
  for (const auto& image : inventory_.images()) verify_file(image.name(), page_data);
}

const pb::ImageChecksum& Checkpoint::listed(const std::string& name) const {
  for (const auto& image : inventory_.images())
    if (image.name() == name) return image;
  fail("checkpoint {}: {} is not listed in the inventory", dir_.string(), name);
}

std::unique_ptr<PageReader> Checkpoint::open_pages(int64_t id) const {
  const pb::ImageChecksum& entry = listed(image_file_name(ImageType::Pages, id));
  return PageReader::open_sealed(dir_, id, entry.xxh3());
}

void Checkpoint::verify_file(const std::string& name, PageData page_data) const {
  const pb::ImageChecksum* entry = &listed(name);
  fs::path p = dir_ / name;
  std::error_code ec;
  if (!fs::exists(p, ec)) fail("checkpoint {}: {} is missing", dir_.string(), name);
  uint64_t size = fs::file_size(p, ec);
  if (ec) fail("checkpoint {}: stat {}: {}", dir_.string(), name, ec.message());
  if (size != entry->size()) {
    fail("checkpoint {}: {} has {} bytes, the inventory says {}", dir_.string(), name, size, entry->size());
  }
  FileSum sum = image_sum(p, /*check_data=*/page_data == PageData::Check);
  if (sum.size != entry->size()) {
    fail("checkpoint {}: {} has {} bytes, the inventory says {}", dir_.string(), name, sum.size, entry->size());
  }
  if (sum.xxh3 != entry->xxh3()) {
    fail("checkpoint {}: {} checksum mismatch (XXH3 {}, the inventory says {})", dir_.string(), name, sum.xxh3,
         entry->xxh3());
  }
}

}  // namespace stasis::images
