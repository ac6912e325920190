// The wire of CRIU's RPC protocol: one protobuf message per datagram of an AF_LOCAL
// SOCK_SEQPACKET socket, no length prefix and no framing of our own. The client sends
// criu_req, we answer criu_resp; a notification is a criu_resp the client answers with a
// criu_req of type NOTIFY.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "criu_rpc.pb.h"

namespace stasis::criu {

// A request the client sent that is not one (garbage, truncated, too large): answered with a
// failure naming what was wrong, then the session ends.
struct BadRequest {
  std::string why;
};

class Channel {
 public:
  // fd: our end of the socket (not owned: it is the fd number the client gave on the command line).
  explicit Channel(int fd);

  // The process that made the socket pair (SO_PEERCRED): the client whose fd numbers the
  // options name.
  pid_t peer_pid() const { return peer_pid_; }

  // The next request; nullopt when the client closed its end. Throws Error on a socket error;
  // a datagram that is not a criu_req yields a BadRequest in *bad (and nullopt).
  std::optional<criu_req> receive(BadRequest* bad);

  // One datagram; with fd >= 0, that descriptor goes along (SCM_RIGHTS).
  void send(const criu_resp& response, int fd = -1);

 private:
  int fd_;
  pid_t peer_pid_ = 0;
};

// The largest request we read: runc's biggest (a few hundred mount maps) is a few KiB.
inline constexpr size_t kMaxRequestBytes = 4u << 20;

}  // namespace stasis::criu
