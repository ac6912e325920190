#include "restore/files.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "common/error.h"
#include "restore/chardevs.h"
#include "restore/event_files.h"
#include "restore/inet_sockets.h"
#include "restore/pipes.h"
#include "restore/regfiles.h"
#include "restore/unix_sockets.h"
#include "restore/terminals.h"

namespace stasis::restore {

int max_fd(const std::vector<pb::FdEntry>& fds) {
  int top = -1;
  for (const auto& e : fds) top = std::max(top, e.fd());
  return top;
}

FileOpener::FileOpener(const FileImages& images, const std::array<int, 3>& stdio, int min_fd)
    : images_(images),
      stdio_(stdio),
      pipes_(images, min_fd),
      ghosts_(images, min_fd),
      unix_sockets_(images, min_fd),
      ptys_(images.ptys, min_fd) {}

FileOpener::~FileOpener() = default;

UniqueFd FileOpener::open(const pb::FdEntry& entry) {
  UniqueFd file;
  switch (entry.kind()) {
    case pb::FdEntry::REGULAR:
    case pb::FdEntry::DIRECTORY: {
      auto it = images_.regfiles.find(entry.file_id());
      if (it == images_.regfiles.end()) fail("fd {}: regfiles.img has no file {}", entry.fd(), entry.file_id());
      file = ghosts_.open(it->second);
      break;
    }
    case pb::FdEntry::PIPE:
      file = pipes_.open_end(entry.file_id());
      break;
    case pb::FdEntry::CHARDEV: {
      auto it = images_.chardevs.find(entry.file_id());
      if (it == images_.chardevs.end()) fail("fd {}: chardevs.img has no device {}", entry.fd(), entry.file_id());
      file = open_chardev(it->second);
      break;
    }
    case pb::FdEntry::EVENT: {
      auto it = images_.event_files.find(entry.file_id());
      if (it == images_.event_files.end()) fail("fd {}: eventfiles.img has no file {}", entry.fd(), entry.file_id());
      file = open_event_file(it->second);
      break;
    }
    case pb::FdEntry::UNIX_SOCKET:
      file = unix_sockets_.open(entry.file_id());
      break;
    case pb::FdEntry::INET_SOCKET: {
      auto it = images_.inet_sockets.find(entry.file_id());
      if (it == images_.inet_sockets.end()) fail("fd {}: inet-sockets.img has no socket {}", entry.fd(), entry.file_id());
      file = open_inet_socket(it->second);
      break;
    }
    case pb::FdEntry::NETLINK_SOCKET: {
      auto it = images_.netlink_sockets.find(entry.file_id());
      if (it == images_.netlink_sockets.end())
        fail("fd {}: netlink-sockets.img has no socket {}", entry.fd(), entry.file_id());
      file = open_netlink_socket(it->second);
      break;
    }
    case pb::FdEntry::TTY:
      file = ptys_.open(entry.file_id());
      break;
    case pb::FdEntry::INHERITED: {
      if (entry.file_id() > 2) fail("fd {}: inherited from unknown standard fd {}", entry.fd(), entry.file_id());
      file.reset(fcntl(stdio_[entry.file_id()], F_DUPFD_CLOEXEC, 0));
      if (!file) fail_errno(errno, "fd {}: dup standard fd {}", entry.fd(), entry.file_id());
      break;
    }
    default:
      fail("fd {}: unknown kind {} in the image", entry.fd(), static_cast<int>(entry.kind()));
  }
  return file;
}

void FileOpener::enter_cwd(const std::string& cwd) {
  // The checkpoint's images hold the deleted working directories of every process of the
  // tree: this process's is the one at its cwd (" (deleted)" in /proc/PID/cwd).
  for (const auto& [id, file] : images_.regfiles)
    if (file.cwd() && (cwd.empty() || cwd == file.path() || cwd == file.path() + " (deleted)")) ghosts_.enter_cwd(file);
}

void FileOpener::remove_ghost_names() { ghosts_.remove_names(); }

void FileOpener::finish_ptys() { ptys_.finish(); }

void install_fd_table(pid_t pid, const std::vector<pb::FdEntry>& fds, const FileImages& images,
                      const std::array<int, 3>& stdio, const std::vector<int>& keep, const SharedFds& shared,
                      const std::string& cwd) {
  // Close everything that is neither kept nor about to be replaced: what the stub inherited.
  const int lowest_kept = keep.empty() ? 1 << 30 : *std::min_element(keep.begin(), keep.end());
  for (int fd = 0; fd < lowest_kept; ++fd)
    if (std::find(keep.begin(), keep.end(), fd) == keep.end()) ::close(fd);

  FileOpener opener(images, stdio, max_fd(fds) + 1);
  // One open file description per file id, so dup'd fds come back sharing offset and flags;
  // one made by another process of the tree (shared) is taken from the fd it left us.
  std::map<std::pair<int, uint64_t>, int> installed = shared;  // (kind, id) -> fd to dup
  for (const auto& entry : fds) {
    const auto key = std::make_pair(static_cast<int>(entry.kind()), entry.file_id());
    const int flags = entry.cloexec() ? O_CLOEXEC : 0;
    auto done = installed.find(key);
    if (done != installed.end()) {
      if (dup3(done->second, entry.fd(), flags) < 0) fail_errno(errno, "dup fd {} to fd {}", done->second, entry.fd());
      continue;
    }
    UniqueFd file = opener.open(entry);
    if (file.get() == entry.fd()) {
      if (fcntl(entry.fd(), F_SETFD, flags ? FD_CLOEXEC : 0) < 0) fail_errno(errno, "fd {}: set flags", entry.fd());
      file.release();
    } else if (dup3(file.get(), entry.fd(), flags) < 0) {
      fail_errno(errno, "install fd {}", entry.fd());
    }
    installed[key] = entry.fd();
  }
  opener.finish_ptys();
  opener.enter_cwd(cwd);
  // Every fd of a ghost is open (and the working directory entered): delete them again.
  opener.remove_ghost_names();
  add_epoll_targets(pid, fds, images);
  // Connections made by another process of the tree were taken out of repair mode there
  // (restore/stub.cc make_shared_files): once is all a connection may be.
  std::vector<pb::FdEntry> own;
  for (const auto& entry : fds)
    if (!shared.count({static_cast<int>(entry.kind()), entry.file_id()})) own.push_back(entry);
  finish_inet_sockets(own, images);
}

}  // namespace stasis::restore
