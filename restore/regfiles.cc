#include "restore/regfiles.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <span>

#include "common/error.h"
#include "common/file_util.h"

namespace stasis::restore {
namespace {

// Flags that only matter when a file is created; never reapply them on reopen.
constexpr int kCreationFlags = O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_CLOEXEC;

UniqueFd open_ghost(const pb::RegFile& file) {
  // Recreate it under a name of ours in the same directory, then unlink it, so the restored
  // fd points at an unlinked file with the same contents, as it did.
  std::filesystem::path path = file.path();
  std::filesystem::path ghost = path;
  ghost += ".stasis-ghost-" + std::to_string(getpid());
  {
    UniqueFd out = open_or_throw(ghost, O_WRONLY | O_CREAT | O_EXCL, file.mode() & 07777);
    write_all(out.get(), std::as_bytes(std::span(file.contents().data(), file.contents().size())), ghost.string());
  }
  int fd = ::open(ghost.c_str(), (file.flags() & ~kCreationFlags) | O_CLOEXEC);
  int saved = errno;
  ::unlink(ghost.c_str());
  if (fd < 0) fail_errno(saved, "reopen deleted file {} (as {})", file.path(), ghost.string());
  return UniqueFd(fd);
}

// A memfd comes back as one: same name, contents and seals (added last: a write seal would
// stop the contents going in). It opens read-write; another access mode is reopened from it.
UniqueFd open_memfd(const pb::RegFile& file) {
  UniqueFd fd(static_cast<int>(::syscall(SYS_memfd_create, file.memfd_name().c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (!fd) fail_errno(errno, "memfd_create {}", file.memfd_name());
  write_all(fd.get(), std::as_bytes(std::span(file.contents().data(), file.contents().size())), file.path());
  if (file.seals() != 0 && ::fcntl(fd.get(), F_ADD_SEALS, file.seals()) < 0)
    fail_errno(errno, "memfd {}: add seals {:#x}", file.memfd_name(), file.seals());
  const int access = static_cast<int>(file.flags()) & O_ACCMODE;
  if (access == O_RDWR && !(file.flags() & O_APPEND)) return fd;
  const std::string self = fmt::format("/proc/self/fd/{}", fd.get());
  UniqueFd reopened(::open(self.c_str(), (file.flags() & ~kCreationFlags) | O_CLOEXEC));
  if (!reopened) fail_errno(errno, "reopen memfd {} with flags {:#o}", file.memfd_name(), file.flags());
  return reopened;
}

}  // namespace

UniqueFd open_regfile(const pb::RegFile& file) {
  UniqueFd fd;
  if (file.memfd()) {
    fd = open_memfd(file);
  } else if (file.deleted()) {
    fd = open_ghost(file);
  } else {
    int raw = ::open(file.path().c_str(), (file.flags() & ~kCreationFlags) | O_CLOEXEC);
    if (raw < 0) fail_errno(errno, "reopen file {}", file.path());
    fd.reset(raw);
  }
  // Directories and O_PATH fds have no offset to set (lseek on O_PATH fails with EBADF).
  if (!S_ISDIR(file.mode()) && !(file.flags() & O_PATH) && ::lseek(fd.get(), static_cast<off_t>(file.pos()), SEEK_SET) < 0)
    fail_errno(errno, "seek {} to {}", file.path(), file.pos());
  return fd;
}

}  // namespace stasis::restore
