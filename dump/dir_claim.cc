#include "dump/dir_claim.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <sstream>

#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"
#include "images/image_type.h"

namespace stasis::dump {

namespace fs = std::filesystem;

namespace {

// The pid holding a flock on the file of fd, from /proc/locks ("1: FLOCK ADVISORY WRITE PID
// MAJ:MIN:INO 0 EOF", device numbers in hex), or 0.
pid_t flock_holder(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) return 0;
  const std::string wanted = fmt::format("{:02x}:{:02x}:{}", major(st.st_dev), minor(st.st_dev), st.st_ino);
  std::string text;
  try {
    text = read_file("/proc/locks");
  } catch (const Error&) {
    return 0;
  }
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string number, kind, mode, access, pid, id;
    if (!(words >> number >> kind)) continue;
    if (kind == "->") words >> kind;  // a waiter
    if (!(words >> mode >> access >> pid >> id)) continue;
    if (kind == "FLOCK" && id == wanted) return static_cast<pid_t>(std::strtol(pid.c_str(), nullptr, 10));
  }
  return 0;
}

}  // namespace

DirectoryClaim::DirectoryClaim(const fs::path& dir) : dir_(dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("create checkpoint directory {}: {}", dir.string(), ec.message());
  fd_ = UniqueFd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd_) {
    if (errno == ENOTDIR) fail("checkpoint directory {}: exists and is not a directory", dir.string());
    fail_errno(errno, "open checkpoint directory {}", dir.string());
  }
  if (::flock(fd_.get(), LOCK_EX | LOCK_NB) < 0) {
    if (errno != EWOULDBLOCK) fail_errno(errno, "lock checkpoint directory {}", dir.string());
    pid_t holder = flock_holder(fd_.get());
    fail("checkpoint directory {} is being written by another dump{}; wait for it to finish or dump into "
         "another directory",
         dir.string(), holder > 0 ? fmt::format(" (pid {})", holder) : "");
  }
  // Leftovers of a dump killed before it finished: ours to clear (it claimed the directory
  // empty). A complete checkpoint (an inventory) is never touched.
  if (fs::is_directory(dir / kUnfinished, ec) && !fs::exists(dir / images::image_file_name(images::ImageType::Inventory), ec)) {
    log::info("{}: removing what a dump that did not finish left there", dir.string());
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code rm;
      fs::remove_all(it->path(), rm);
      if (rm) fail("checkpoint directory {}: removing the leftover {}: {}", dir.string(), it->path().string(), rm.message());
    }
    if (ec) fail("list checkpoint directory {}: {}", dir.string(), ec.message());
  }
}

void DirectoryClaim::mark_unfinished() {
  if (::mkdir((dir_ / kUnfinished).c_str(), 0700) < 0 && errno != EEXIST)
    fail_errno(errno, "checkpoint directory {}: mkdir {}", dir_.string(), kUnfinished);
}

void DirectoryClaim::complete() {
  // A mark left next to an inventory is harmless (a complete checkpoint is never cleared).
  if (::rmdir((dir_ / kUnfinished).c_str()) < 0 && errno != ENOENT)
    log::warn("checkpoint directory {}: rmdir {}: {}", dir_.string(), kUnfinished, describe_errno(errno));
}

}  // namespace stasis::dump
