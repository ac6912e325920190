#include "criu/images_dir.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"
#include "images/checkpoint.h"
#include "images/image_type.h"

namespace stasis::criu {

namespace fs = std::filesystem;

namespace {

constexpr const char* kRuncDescriptors = "descriptors.json";

// The files of a complete stasis checkpoint in dir (its inventory and what it lists), when
// every name in `names` is one of them; else nothing.
std::vector<std::string> previous_checkpoint(const fs::path& dir, const std::vector<std::string>& names) {
  const std::string inventory = images::image_file_name(images::ImageType::Inventory);
  if (std::find(names.begin(), names.end(), inventory) == names.end()) return {};
  std::vector<std::string> listed{inventory};
  try {
    images::Checkpoint previous = images::Checkpoint::open(dir);
    for (const auto& image : previous.inventory().images()) listed.push_back(image.name());
  } catch (const Error&) {
    return {};
  }
  for (const std::string& n : names)
    if (std::find(listed.begin(), listed.end(), n) == listed.end()) return {};
  return names;
}

}  // namespace

DumpDirectory::DumpDirectory(const Directories& dirs, const std::vector<std::string>& ours) : dirs_(dirs) {
  const fs::path& dir = dirs.images_path;
  std::error_code ec;
  std::vector<std::string> others;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name != kRuncDescriptors && std::find(ours.begin(), ours.end(), name) == ours.end()) others.push_back(name);
  }
  if (ec) fail("list the images directory {}: {}", dir.string(), ec.message());
  std::sort(others.begin(), others.end());
  if (!others.empty()) {
    previous_files_ = previous_checkpoint(dir, others);
    if (previous_files_.empty())
      fail("the images directory {} holds {} file(s) ({}{}) that are not a stasis checkpoint: stasis writes a "
           "checkpoint into an empty directory, or one that holds a checkpoint of its own; give another "
           "--image-path, or empty this one",
           dir.string(), others.size(), others.front(), others.size() > 1 ? ", ..." : "");
    // Beside the directory, on its file system: renames, not copies.
    std::string templ = fmt::format("{}/.{}.stasis-previous-XXXXXX", dir.parent_path().string(), dir.filename().string());
    if (!::mkdtemp(templ.data()))
      fail_errno(errno, "the images directory {} holds a checkpoint; moving it aside for the new one: mkdtemp {}",
                 dir.string(), templ);
    previous_ = templ;
    for (const std::string& name : previous_files_) {
      if (::rename((dir / name).c_str(), (previous_ / name).c_str()) < 0) {
        int err = errno;
        put_back();
        fail_errno(err, "move the previous checkpoint's {} from {} to {}", name, dir.string(), previous_.string());
      }
    }
    log::info("the previous checkpoint in {} waits in {} until the new one is complete", dir.string(), previous_.string());
  }
  const fs::path descriptors = dir / kRuncDescriptors;
  if (fs::is_regular_file(descriptors, ec)) {
    stashed_.push_back({kRuncDescriptors, read_file(descriptors)});
    if (::unlink(descriptors.c_str()) < 0) {
      int err = errno;
      put_back();
      fail_errno(err, "unlink {}", descriptors.string());
    }
  }
  if (dirs.work_is_images)
    for (const std::string& name : ours) fs::remove(dir / name, ec);
}

DumpDirectory::~DumpDirectory() {
  if (!done_) failed();
}

UniqueFd DumpDirectory::put_back() {
  const fs::path& dir = dirs_.images_path;
  if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST)
    log::warn("make the images directory {} again: {}", dir.string(), describe_errno(errno));
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return fd;
  for (const auto& f : stashed_) {
    UniqueFd out(::openat(fd.get(), f.name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!out || ::write(out.get(), f.data.data(), f.data.size()) != static_cast<ssize_t>(f.data.size()))
      log::warn("could not put {} back into {}: {}", f.name, dir.string(), describe_errno(errno));
  }
  if (!previous_.empty()) {
    bool all = true;
    for (const std::string& name : previous_files_) {
      if (::rename((previous_ / name).c_str(), (dir / name).c_str()) < 0 && errno != ENOENT) {
        log::error("could not put the previous checkpoint's {} back from {}: {}", name, previous_.string(),
                   describe_errno(errno));
        all = false;
      }
    }
    if (all) {
      std::error_code ec;
      fs::remove_all(previous_, ec);
      previous_.clear();
    }
  }
  return fd;
}

UniqueFd DumpDirectory::succeeded() {
  done_ = true;
  if (!previous_.empty()) {
    std::error_code ec;
    fs::remove_all(previous_, ec);
    if (ec) log::warn("remove the previous checkpoint in {}: {}", previous_.string(), ec.message());
    previous_.clear();
  }
  return put_back();
}

UniqueFd DumpDirectory::failed() {
  done_ = true;
  return put_back();
}

}  // namespace stasis::criu
