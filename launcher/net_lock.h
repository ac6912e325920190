// The network lock of a dump with established TCP connections (`dump --tcp-established`):
// an nftables table of ours (family inet) in the job's network namespace whose input and
// output hooks drop every packet of the dumped connections, matched by their four-tuples.
// It is installed before any connection is read, so that nothing moves their sequence
// numbers or queues under us, and no packet of the peer meets a closed port (an RST) while
// the job is gone. Matching the connections alone, not all traffic, makes the same lock fit a
// container's own namespace and a process dumped in the host's. With --leave-running it is
// removed when the dump ends; when the job is killed it stays until the restore removes it
// (the table's name is in the image), or goes with the container's namespace. The restore of
// a container makes the same table in the new namespace before its network comes up
// (restore/inet_sockets.h), so that no packet of the peer meets the namespace before the
// connections are back, and removes it once the job runs.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"

namespace stasis::launcher {

// The names of lock tables start so (the net dump leaves them out of the firewall it refuses).
inline constexpr std::string_view kNetLockTablePrefix = "stasis_lock_";

// Packets of this firewall mark (SO_MARK) pass the lock: the segments the restore makes up
// for a half-closed connection, as from its peer (restore/tcp_segment.h).
inline constexpr uint32_t kNetLockPassMark = 0x57a515f1;

// "10.0.0.2:80", "[::1]:80" for a sockaddr_in or sockaddr_in6 given as its bytes; "*" for none.
std::string socket_address_text(const std::string& sockaddr_bytes);
// The address alone, "10.0.0.2" or "ff02::1", of a sockaddr_in or sockaddr_in6.
std::string ip_address_text(const sockaddr_storage& ss);

struct LockedConnection {
  sockaddr_storage local;
  sockaddr_storage peer;
};
// One from the socket addresses as images keep them (the sockaddr's bytes).
LockedConnection locked_connection(std::string_view local, std::string_view peer);

// Holds the packets of these connections in the network namespace of netns_fd, in table
// (made when create).
void lock_connections(const std::string& table, bool create, const std::vector<LockedConnection>& connections,
                      int netns_fd);
// Removes table from the namespace of netns_fd; no error when it is not there.
void remove_lock(const std::string& table, int netns_fd);

class NetLock {
 public:
  NetLock() = default;
  ~NetLock();  // removes the table unless keep() was called
  NetLock(const NetLock&) = delete;
  NetLock& operator=(const NetLock&) = delete;

  // Drops the packets of these connections (local, peer), in pid's network namespace; the
  // table is made on the first call. Addresses are sockaddr_in or sockaddr_in6 (v4-mapped
  // IPv6 addresses are matched as IPv4).
  using Connection = LockedConnection;
  void lock(pid_t pid, const std::vector<Connection>& connections);
  // The job was killed: the lock stays for the restore.
  void keep() { kept_ = true; }
  bool active() const { return made_; }
  const std::string& table() const { return table_; }
  int netns() const { return netns_.get(); }

 private:
  UniqueFd netns_;
  std::string table_;
  bool made_ = false;
  bool kept_ = false;
};

}  // namespace stasis::launcher
