#include "criu/channel.h"

#include <sys/socket.h>

#include <cstring>
#include <vector>

#include "common/error.h"
#include "common/fd_passing.h"
#include "common/log.h"

namespace stasis::criu {

Channel::Channel(int fd) : fd_(fd) {
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
    fail_errno(errno, "fd {} is not a socket (runc and podman pass one end of a socket pair)", fd);
  if (type != SOCK_SEQPACKET) fail("fd {}: a socket of type {}, not SOCK_SEQPACKET as CRIU's protocol has it", fd, type);
  ucred cred{};
  len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) fail_errno(errno, "fd {}: SO_PEERCRED", fd);
  peer_pid_ = cred.pid;
}

std::optional<criu_req> Channel::receive(BadRequest* bad) {
  // The datagram's size first (MSG_TRUNC reports it whole), so that none is cut short.
  ssize_t size;
  do size = ::recv(fd_, nullptr, 0, MSG_PEEK | MSG_TRUNC);
  while (size < 0 && errno == EINTR);
  if (size < 0) {
    if (errno == ECONNRESET) return std::nullopt;
    fail_errno(errno, "receive a request on fd {}", fd_);
  }
  if (size == 0) {
    // The client's end closed, or an empty datagram (which is no criu_req either): either way
    // the session is over. Take it off the queue in case it was a datagram.
    char c;
    (void)::recv(fd_, &c, 0, MSG_DONTWAIT);
    return std::nullopt;
  }
  std::vector<char> buf(static_cast<size_t>(size));
  ssize_t got;
  do got = ::recv(fd_, buf.data(), buf.size(), MSG_TRUNC);
  while (got < 0 && errno == EINTR);
  if (got < 0) fail_errno(errno, "receive a request on fd {}", fd_);
  if (static_cast<size_t>(size) > kMaxRequestBytes) {
    bad->why = fmt::format("a request of {} bytes: more than the {} bytes a criu_req can be", size, kMaxRequestBytes);
    return std::nullopt;
  }
  criu_req req;
  if (!req.ParseFromArray(buf.data(), static_cast<int>(got))) {
    std::string missing = req.InitializationErrorString();
    bad->why = fmt::format("a datagram of {} bytes that is not a criu_req message{}", got,
                           missing.empty() ? " (malformed or truncated protobuf)"
                                           : fmt::format(" (required field(s) missing: {})", missing));
    return std::nullopt;
  }
  return req;
}

void Channel::send(const criu_resp& response, int fd) {
  std::string bytes;
  if (!response.SerializeToString(&bytes)) fail("serialize a criu_resp (required fields unset)");
  send_with_fd(fd_, bytes, fd, fmt::format("send a response of {} bytes on fd {}", bytes.size(), fd_));
}

}  // namespace stasis::criu
