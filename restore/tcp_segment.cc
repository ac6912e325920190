#include "restore/tcp_segment.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/error.h"
#include "common/fd.h"
#include "launcher/net_lock.h"

namespace stasis::restore {

namespace {

constexpr uint8_t kFin = 0x01, kAck = 0x10;
constexpr uint8_t kOptNop = 1, kOptTimestamp = 8;

sockaddr_storage address_of(const std::string& bytes) {
  sockaddr_storage ss{};
  std::memcpy(&ss, bytes.data(), std::min(bytes.size(), sizeof ss));
  return ss;
}

// A v4-mapped IPv6 address as the IPv4 one it stands for (the packets are IPv4).
sockaddr_storage unmapped(const sockaddr_storage& ss) {
  if (ss.ss_family != AF_INET6) return ss;
  const auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
  if (!IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) return ss;
  sockaddr_storage out{};
  auto& in = reinterpret_cast<sockaddr_in&>(out);
  in.sin_family = AF_INET;
  in.sin_port = in6.sin6_port;
  std::memcpy(&in.sin_addr, &in6.sin6_addr.s6_addr[12], 4);
  return out;
}

void put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}

void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  put16(b, at, static_cast<uint16_t>(v >> 16));
  put16(b, at + 2, static_cast<uint16_t>(v));
}

// The Internet checksum (RFC 1071) of the pseudo-header's words and the segment's.
uint16_t checksum(const std::vector<uint8_t>& pseudo, const std::vector<uint8_t>& segment) {
  uint64_t sum = 0;
  for (const auto* b : {&pseudo, &segment})
    for (size_t i = 0; i < b->size(); i += 2)
      sum += static_cast<uint32_t>((*b)[i] << 8) | (i + 1 < b->size() ? static_cast<uint32_t>((*b)[i + 1]) : 0u);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

}  // namespace

void send_made_up_segment(const pb::InetSocket& k, const MadeUpSegment& segment, const std::string& what) {
  const sockaddr_storage from = unmapped(address_of(k.peer()));
  const sockaddr_storage to = unmapped(address_of(k.local()));
  const bool v4 = from.ss_family == AF_INET;
  if (to.ss_family != from.ss_family) fail("{}: its addresses are of two families", what);
  const uint16_t sport = v4 ? reinterpret_cast<const sockaddr_in&>(from).sin_port
                            : reinterpret_cast<const sockaddr_in6&>(from).sin6_port;
  const uint16_t dport = v4 ? reinterpret_cast<const sockaddr_in&>(to).sin_port
                            : reinterpret_cast<const sockaddr_in6&>(to).sin6_port;

  // The TCP header (ports in network order already), with the timestamp option if used.
  const size_t options = segment.timestamps ? 12 : 0;
  std::vector<uint8_t> tcp(20 + options, 0);
  std::memcpy(&tcp[0], &sport, 2);
  std::memcpy(&tcp[2], &dport, 2);
  put32(tcp, 4, segment.seq);
  put32(tcp, 8, segment.ack);
  tcp[12] = static_cast<uint8_t>(((20 + options) / 4) << 4);
  tcp[13] = static_cast<uint8_t>(kAck | (segment.fin ? kFin : 0));
  put16(tcp, 14, segment.window);
  if (segment.timestamps) {
    tcp[20] = kOptNop;
    tcp[21] = kOptNop;
    tcp[22] = kOptTimestamp;
    tcp[23] = 10;  // TSval and TSecr 0: bytes 24..31 stay zero
  }
  std::vector<uint8_t> pseudo;
  auto append = [&](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    pseudo.insert(pseudo.end(), b, b + n);
  };
  if (v4) {
    append(&reinterpret_cast<const sockaddr_in&>(from).sin_addr, 4);
    append(&reinterpret_cast<const sockaddr_in&>(to).sin_addr, 4);
    const uint8_t rest[4] = {0, IPPROTO_TCP, 0, static_cast<uint8_t>(tcp.size())};
    append(rest, 4);
  } else {
    append(&reinterpret_cast<const sockaddr_in6&>(from).sin6_addr, 16);
    append(&reinterpret_cast<const sockaddr_in6&>(to).sin6_addr, 16);
    const uint8_t rest[8] = {0, 0, 0, static_cast<uint8_t>(tcp.size()), 0, 0, 0, IPPROTO_TCP};
    append(rest, 8);
  }
  put16(tcp, 16, checksum(pseudo, tcp));

  // A raw socket bound to the peer's address, however foreign here (transparent), that the
  // kernel gives an IP header from there.
  UniqueFd raw(::socket(from.ss_family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!raw) fail_errno(errno, "{}: raw socket to make up its peer's segment", what);
  const int one = 1;
  const int mark = static_cast<int>(launcher::kNetLockPassMark);
  if (::setsockopt(raw.get(), v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_TRANSPARENT : IPV6_TRANSPARENT, &one,
                   sizeof one) < 0 ||
      ::setsockopt(raw.get(), SOL_SOCKET, SO_MARK, &mark, sizeof mark) < 0)
    fail_errno(errno, "{}: set up the raw socket for its peer's segment", what);
  sockaddr_storage bind_to = from;
  sockaddr_storage send_to = to;
  // A raw socket has no port: zero in both.
  if (v4) {
    reinterpret_cast<sockaddr_in&>(bind_to).sin_port = 0;
    reinterpret_cast<sockaddr_in&>(send_to).sin_port = 0;
  } else {
    reinterpret_cast<sockaddr_in6&>(bind_to).sin6_port = 0;
    reinterpret_cast<sockaddr_in6&>(send_to).sin6_port = 0;
  }
  const socklen_t len = v4 ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (::bind(raw.get(), reinterpret_cast<sockaddr*>(&bind_to), len) < 0)
    fail_errno(errno, "{}: bind a raw socket to its peer's address {}", what, launcher::socket_address_text(k.peer()));
  ssize_t n;
  do n = ::sendto(raw.get(), tcp.data(), tcp.size(), 0, reinterpret_cast<sockaddr*>(&send_to), len);
  while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(tcp.size()))
    fail_errno(n < 0 ? errno : EIO, "{}: send it its peer's {} again", what, segment.fin ? "FIN" : "acknowledgement");
}

}  // namespace stasis::restore
