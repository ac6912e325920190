// Netlink sock_diag for unix sockets (UNIX_DIAG): every unix socket of a network namespace, or
// one by inode, with its name, socket file, peer, pending connections, queue lengths and
// shutdown state. A sock_diag socket answers for the namespace it was made in.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/fd.h"

namespace stasis {

struct UnixDiag {
  uint8_t type = 0, state = 0, shutdown = 0;
  std::string name;  // a path without its NUL, or an abstract name starting with one
  uint32_t vfs_ino = 0, vfs_dev = 0;  // the socket file of a path (dev as stat's st_dev)
  uint32_t peer = 0;
  std::vector<uint32_t> icons;  // a listener: the client ends of its pending connections
  uint32_t rqueue = 0, wqueue = 0;  // a listener: pending count and backlog
};

// A NETLINK_SOCK_DIAG socket made in pid's network namespace.
UniqueFd unix_diag_socket(pid_t pid);
// Every unix socket of the socket's namespace (ino 0), or the one of that inode.
std::map<uint32_t, UnixDiag> unix_diag_query(int diag_socket, uint32_t ino = 0);
// The socket files (dev, inode) bound by a live socket in any network namespace of a process
// this one can see.
std::set<std::pair<uint32_t, uint32_t>> live_unix_socket_files();

}  // namespace stasis
