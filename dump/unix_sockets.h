// Unix sockets of the job (unix-sockets.img): type, state, name, peer, pending connections and
// queue lengths from netlink sock_diag (UNIX_DIAG) in the job's network namespace; options and
// the queued data from a copy of the socket taken with pidfd_getfd, read in place with
// SO_PEEK_OFF + MSG_PEEK so that the job's queues stay as they were (docs/dump.md).
// A socket connected to one outside the job, or with file descriptors in flight, is refused.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/unix_diag.h"
#include "unix_socket.pb.h"

namespace stasis::dump {

class UnixSocketCollector {
 public:
  // leave_running: the job runs on after the dump, so nothing of it may be consumed.
  explicit UnixSocketCollector(bool leave_running) : leave_running_(leave_running) {}
  UnixSocketCollector(const UnixSocketCollector&) = delete;
  UnixSocketCollector& operator=(const UnixSocketCollector&) = delete;
  ~UnixSocketCollector();

  // Whether fd of pid is an AF_UNIX socket (copy: the fd taken with pidfd_getfd).
  static bool is_unix(int copy);
  // Describes the open file description of (pid, fd), id in the images; copy as above.
  void describe(pid_t pid, int fd, UniqueFd copy, uint32_t flags, uint64_t id);
  // After every process: every peer and pending connection must be the job's, and each
  // accepted connection is tied to its listening socket. Throws UnsupportedError otherwise.
  void check_peers();
  // Takes the data of connections still waiting in an accept queue (see the .cc), then
  // writes unix-sockets.img (even when empty).
  void write_images(const std::filesystem::path& dir);

  size_t count() const { return sockets_.size(); }

 private:
  using Diag = UnixDiag;
  struct Netns {
    UniqueFd diag;                    // NETLINK_SOCK_DIAG socket made in that namespace
    std::map<uint32_t, Diag> by_ino;  // every unix socket of the namespace
  };
  struct Held {
    pid_t pid;
    int fd;
    uint64_t netns;
    UniqueFd copy;          // kept for listeners whose pending connections hold data
    std::string peer_name;  // getpeername(), for messages
  };
  Netns& netns_of(pid_t pid, uint64_t* key);
  void refuse(uint32_t ino, const std::string& why) const;
  std::string what(uint32_t ino) const;  // "pid P fd N: unix stream socket NAME"

  bool leave_running_;
  std::map<uint64_t, Netns> netns_;       // by namespace inode
  std::map<uint32_t, pb::UnixSocket> sockets_;  // by socket inode
  std::map<uint32_t, Held> held_;
};

}  // namespace stasis::dump
