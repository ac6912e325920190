// TCP and UDP sockets (IPv4 and IPv6) and netlink sockets of the job: inet-sockets.img and
// netlink-sockets.img, one record per open file description (FdEntry kinds INET_SOCKET and
// NETLINK_SOCKET). Each socket is read through a copy of its fd (pidfd_getfd): address,
// peer, state and the options programs set. Established TCP connections are read with
// TCP_REPAIR (sequence numbers, queues, window, options) under a network lock
// (launcher/net_lock.h), only with `dump --tcp-established`; without it, and for kinds we cannot
// bring back (packet sockets, other families, TCP in a closing state), the dump refuses,
// naming pid, fd and what would help.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common/fd.h"
#include "launcher/net_lock.h"
#include "files.pb.h"
#include "inet_socket.pb.h"

namespace stasis::dump {

// The integer options saved beyond the named ones of pb::InetOptions (restore sets them
// again by number; family and type 0: any). Netlink sockets have theirs here too.
struct InetIntOption {
  int level;
  int name;
  const char* text;
  int family;
  int type = 0;  // SOCK_DGRAM: multicast options, which TCP refuses to set
};
const std::vector<InetIntOption>& inet_int_options();

class InetCollector {
 public:
  InetCollector() = default;
  // Turns repair mode off on every connection still in it (the job goes on), unless
  // hand_over_to_kill() was called; then the network lock is removed (or kept, see there).
  ~InetCollector();
  InetCollector(const InetCollector&) = delete;
  InetCollector& operator=(const InetCollector&) = delete;

  void set_options(bool tcp_established, bool leave_running) {
    tcp_established_ = tcp_established;
    leave_running_ = leave_running;
  }
  // The kind of a socket fd we save (INET_SOCKET, NETLINK_SOCKET); nothing for a Unix
  // socket or for an fd that is no socket. Throws UnsupportedError for other families.
  static std::optional<pb::FdEntry::Kind> kind_of(pid_t pid, int pidfd, int fd, const std::string& link);
  // Reads the socket of (pid, fd), a new open file description of id `id`.
  void describe(pid_t pid, int pidfd, int fd, pb::FdEntry::Kind kind, uint32_t flags, uint64_t id);
  // After every fd of pid: locks the network for its established connections and reads them.
  void finish_process(pid_t pid);
  // The job is about to be killed: its connections stay in repair mode (closing them then
  // sends nothing to the peer) and the network lock stays until the restore removes it.
  void hand_over_to_kill();
  // The job stays frozen for another host to take its connections over: the lock stays (its
  // table's name is returned; "" when there was nothing to lock) for the caller to remove.
  std::string keep_lock() {
    if (!lock_.active()) return "";
    lock_.keep();
    return lock_.table();
  }
  void write_images(const std::filesystem::path& dir) const;
  size_t count() const { return inet_.size() + netlink_.size(); }

 private:
  struct Pending {
    pid_t pid;
    int fd;
    size_t index;  // into inet_
    UniqueFd sock;
  };
  void read_connection(Pending& p);

  bool tcp_established_ = false;
  bool leave_running_ = false;
  std::vector<pb::InetSocket> inet_;
  std::vector<pb::NetlinkSocket> netlink_;
  // What a fresh socket of a kind has: buffer sizes, the options of inet_int_options() it
  // knows and their values, its congestion control.
  struct Defaults {
    int rcvbuf = -1, sndbuf = -1;
    std::vector<bool> known;
    std::vector<int> values;
    std::string congestion;
  };
  const Defaults& defaults_for(int family, int type, int protocol);
  // The options of inet_int_options() whose value on s differs from d's.
  static void read_int_options(int s, const Defaults& d, google::protobuf::RepeatedPtrField<pb::IntOption>& out);
  std::map<std::tuple<int, int, int>, Defaults> defaults_;  // by (family, type, protocol)
  std::vector<Pending> pending_;  // established connections of the current process
  // Its connections still being made (SYN_SENT), held by the lock with the established ones
  // under --tcp-established: a frozen or migrated original must neither send its SYN again
  // nor complete the handshake behind the restore's back.
  std::vector<size_t> connecting_;  // into inet_
  launcher::NetLock lock_;                  // declared before repaired_: removed after repair is off
  std::vector<UniqueFd> repaired_;  // our copies of connections in repair mode
  bool handed_over_ = false;
};

}  // namespace stasis::dump
