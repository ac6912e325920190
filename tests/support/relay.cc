#include "tests/support/relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

namespace stasis::test {

Relay::Relay(int to_port, std::optional<uint64_t> flip_at, size_t keep)
    : to_port_(to_port), flip_at_(flip_at), keep_(keep) {
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(listener_, 1) < 0 ||
      ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) < 0)
    return;
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] { run(); });
}

Relay::~Relay() {
  stop_ = true;
  ::shutdown(listener_, SHUT_RDWR);
  if (thread_.joinable()) thread_.join();
  ::close(listener_);
}

std::string Relay::client_bytes() const {
  std::lock_guard lock(mutex_);
  return client_bytes_;
}

void Relay::run() {
  pollfd l{listener_, POLLIN, 0};
  while (!stop_ && ::poll(&l, 1, 100) == 0) {
  }
  if (stop_) return;
  int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
  int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(to_port_));
  if (client >= 0 && ::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    uint64_t forwarded = 0;
    std::vector<char> buf(1 << 16);
    while (!stop_) {
      pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (::poll(p, 2, 100) <= 0) continue;
      bool closed = false;
      for (int i = 0; i < 2 && !closed; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = ::read(p[i].fd, buf.data(), buf.size());
        if (n <= 0) {
          closed = true;
          break;
        }
        if (i == 0) {
          if (flip_at_ && forwarded <= *flip_at_ && *flip_at_ < forwarded + static_cast<uint64_t>(n)) {
            buf[*flip_at_ - forwarded] ^= 0x01;
            flipped_ = true;
          }
          forwarded += static_cast<uint64_t>(n);
          std::lock_guard lock(mutex_);
          client_bytes_.append(buf.data(), std::min(static_cast<size_t>(n), keep_ - client_bytes_.size()));
        }
        if (::send(p[1 - i].fd, buf.data(), static_cast<size_t>(n), MSG_NOSIGNAL) != n) closed = true;
      }
      if (closed) break;
    }
  }
  if (client >= 0) ::close(client);
  ::close(server);
}

}  // namespace stasis::test
