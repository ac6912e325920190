#include "common/file_util.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "common/error.h"

namespace stasis {

UniqueFd open_or_throw(const std::filesystem::path& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) fail_errno(errno, "open {}", path.string());
  return UniqueFd(fd);
}

std::string read_file(const std::filesystem::path& path) {
  UniqueFd fd = open_or_throw(path, O_RDONLY);
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(errno, "read {}", path.string());
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

void write_file(const std::filesystem::path& path, std::string_view data) {
  UniqueFd fd = open_or_throw(path, O_WRONLY);
  ssize_t n = ::write(fd.get(), data.data(), data.size());
  if (n < 0) fail_errno(errno, "write '{}' to {}", data, path.string());
  if (static_cast<size_t>(n) != data.size()) fail("write '{}' to {}: short write", data, path.string());
}

void write_file_atomic(const std::filesystem::path& path, std::string_view data, bool sync) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    UniqueFd fd = open_or_throw(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write_all(fd.get(), std::as_bytes(std::span(data.data(), data.size())), tmp.string());
    if (sync && ::fsync(fd.get()) < 0) fail_errno(errno, "fsync {}", tmp.string());
  }
  if (!sync) {
    // ext4 (auto_da_alloc) writes a file's data out, synchronously, when it is renamed over
    // another: milliseconds on a disk-backed /run. Exchanging the two names skips that, and
    // readers still always find a whole file; the old one then goes under the tmp name.
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_EXCHANGE) == 0) {
      ::unlink(tmp.c_str());
      return;
    }
    // ENOENT: no file to replace yet; EINVAL: a file system without exchange. Plain rename.
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) fail_errno(errno, "rename {} to {}", tmp.string(), path.string());
}

void read_exact(int fd, std::span<std::byte> out, std::string_view what) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(errno, "read {}", what);
    }
    if (n == 0) fail("read {}: unexpected end of file after {} of {} bytes", what, done, out.size());
    done += static_cast<size_t>(n);
  }
}

void write_all(int fd, std::span<const std::byte> data, std::string_view what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(errno, "write {}", what);
    }
    done += static_cast<size_t>(n);
  }
}

}  // namespace stasis
