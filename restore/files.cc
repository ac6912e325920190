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

void install_fd_table(const std::vector<pb::FdEntry>& fds, const FileImages& images,
                      const std::array<int, 3>& stdio, const std::vector<int>& keep) {
  // Close everything that is neither kept nor about to be replaced: what the stub inherited.
  const int lowest_kept = keep.empty() ? 1 << 30 : *std::min_element(keep.begin(), keep.end());
  for (int fd = 0; fd < lowest_kept; ++fd)
    if (std::find(keep.begin(), keep.end(), fd) == keep.end()) ::close(fd);

  PipeFactory pipes(images, max_fd(fds) + 1);
  GhostFiles ghosts(images, max_fd(fds) + 1);
  UnixSocketFactory unix_sockets(images, max_fd(fds) + 1);
  PtyFactory ptys(images.ptys, max_fd(fds) + 1);
  // One open file description per file id, so dup'd fds come back sharing offset and flags.
  std::map<std::pair<int, uint64_t>, int> installed;  // (kind, id) -> first fd installed
  for (const auto& entry : fds) {
    const auto key = std::make_pair(static_cast<int>(entry.kind()), entry.file_id());
    const int flags = entry.cloexec() ? O_CLOEXEC : 0;
    auto done = installed.find(key);
    if (done != installed.end()) {
      if (dup3(done->second, entry.fd(), flags) < 0) fail_errno(errno, "dup fd {} to fd {}", done->second, entry.fd());
      continue;
    }
    UniqueFd file;
    switch (entry.kind()) {
      case pb::FdEntry::REGULAR:
      case pb::FdEntry::DIRECTORY: {
        auto it = images.regfiles.find(entry.file_id());
        if (it == images.regfiles.end()) fail("fd {}: regfiles.img has no file {}", entry.fd(), entry.file_id());
        file = ghosts.open(it->second);
        break;
      }
      case pb::FdEntry::PIPE:
        file = pipes.open_end(entry.file_id());
        break;
      case pb::FdEntry::CHARDEV: {
        auto it = images.chardevs.find(entry.file_id());
        if (it == images.chardevs.end()) fail("fd {}: chardevs.img has no device {}", entry.fd(), entry.file_id());
        file = open_chardev(it->second);
        break;
      }
      case pb::FdEntry::EVENT: {
        auto it = images.event_files.find(entry.file_id());
        if (it == images.event_files.end()) fail("fd {}: eventfiles.img has no file {}", entry.fd(), entry.file_id());
        file = open_event_file(it->second);
        break;
      }
      case pb::FdEntry::UNIX_SOCKET:
        file = unix_sockets.open(entry.file_id());
        break;
      case pb::FdEntry::INET_SOCKET: {
        auto it = images.inet_sockets.find(entry.file_id());
        if (it == images.inet_sockets.end()) fail("fd {}: inet-sockets.img has no socket {}", entry.fd(), entry.file_id());
        file = open_inet_socket(it->second);
        break;
      }
      case pb::FdEntry::NETLINK_SOCKET: {
        auto it = images.netlink_sockets.find(entry.file_id());
        if (it == images.netlink_sockets.end())
          fail("fd {}: netlink-sockets.img has no socket {}", entry.fd(), entry.file_id());
        file = open_netlink_socket(it->second);
        break;
      }
      case pb::FdEntry::TTY:
        file = ptys.open(entry.file_id());
        break;
      case pb::FdEntry::INHERITED: {
        if (entry.file_id() > 2) fail("fd {}: inherited from unknown standard fd {}", entry.fd(), entry.file_id());
        file.reset(fcntl(stdio[entry.file_id()], F_DUPFD_CLOEXEC, 0));
        if (!file) fail_errno(errno, "fd {}: dup standard fd {}", entry.fd(), entry.file_id());
        break;
      }
      default:
        fail("fd {}: unknown kind {} in the image", entry.fd(), static_cast<int>(entry.kind()));
    }
    if (file.get() == entry.fd()) {
      if (fcntl(entry.fd(), F_SETFD, flags ? FD_CLOEXEC : 0) < 0) fail_errno(errno, "fd {}: set flags", entry.fd());
      file.release();
    } else if (dup3(file.get(), entry.fd(), flags) < 0) {
      fail_errno(errno, "install fd {}", entry.fd());
    }
    installed[key] = entry.fd();
  }
  ptys.finish();
  for (const auto& [id, file] : images.regfiles)
    if (file.cwd()) ghosts.enter_cwd(file);
  // Every fd of a ghost is open (and the working directory entered): delete them again.
  ghosts.remove_names();
  add_epoll_targets(fds, images);
  finish_inet_sockets(fds, images);
}

}  // namespace stasis::restore
