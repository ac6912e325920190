#include "dump/inet_sockets.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "common/compat.h"
#include "common/error.h"
#include "common/fault.h"
#include "common/file_util.h"
#include "common/log.h"
#include "dump/inet_multicast.h"
#include "images/image_file.h"
#include "images/image_type.h"

namespace stasis::dump {

namespace {

// TCP states (include/net/tcp_states.h, not in the uapi headers).
constexpr int kEstablished = 1;
constexpr int kSynSent = 2;
constexpr int kFinWait1 = 4;
constexpr int kFinWait2 = 5;
constexpr int kClose = 7;
constexpr int kCloseWait = 8;
constexpr int kLastAck = 9;
constexpr int kListen = 10;
constexpr int kClosing = 11;

// A connection the peer can still talk to: established, or closed on one side or both with
// the last acknowledgement still to come (TIME_WAIT never shows at an fd: the socket is CLOSE
// by then).
bool connected(int state) {
  return state == kEstablished || state == kFinWait1 || state == kFinWait2 || state == kCloseWait ||
         state == kLastAck || state == kClosing;
}

const char* tcp_state_name(int state) {
  static const char* const names[] = {"?",         "ESTABLISHED", "SYN_SENT", "SYN_RECV",   "FIN_WAIT1", "FIN_WAIT2",
                                      "TIME_WAIT", "CLOSE",       "CLOSE_WAIT", "LAST_ACK", "LISTEN",    "CLOSING"};
  return state >= 0 && state < 12 ? names[state] : "?";
}

const char* family_name(int family) {
  switch (family) {
    case AF_PACKET: return "packet socket (AF_PACKET)";
    case AF_NETLINK: return "netlink socket";
    case AF_INET: return "IPv4 socket";
    case AF_INET6: return "IPv6 socket";
    case AF_UNIX: return "Unix socket";
    case AF_ALG: return "crypto socket (AF_ALG)";
    case AF_VSOCK: return "vsock socket (AF_VSOCK)";
    case AF_XDP: return "XDP socket (AF_XDP)";
    case AF_BLUETOOTH: return "Bluetooth socket";
    case AF_KEY: return "key management socket (AF_KEY)";
    default: return nullptr;
  }
}

UniqueFd grab(int pidfd, pid_t pid, int fd) {
  int raw = compat::sys_pidfd_getfd(pidfd, fd, 0);
  if (raw < 0) fail_errno(errno, "pid {} fd {}: pidfd_getfd", pid, fd);
  return UniqueFd(raw);
}

int get_int(int sock, int level, int name, pid_t pid, int fd, const char* what) {
  int v = 0;
  socklen_t len = sizeof v;
  if (::getsockopt(sock, level, name, &v, &len) < 0) fail_errno(errno, "pid {} fd {}: getsockopt {}", pid, fd, what);
  return v;
}

void set_int(int sock, int level, int name, int v, pid_t pid, int fd, const char* what) {
  if (::setsockopt(sock, level, name, &v, sizeof v) < 0) fail_errno(errno, "pid {} fd {}: setsockopt {}", pid, fd, what);
}

std::string address_bytes(const sockaddr_storage& ss, socklen_t len) {
  return std::string(reinterpret_cast<const char*>(&ss), len);
}

// The peer of a connection being made (connect() in progress): getpeername says "not
// connected" until the handshake ends, but /proc/PID/net/tcp (tcp6) lists the socket by inode
// with its remote address: "sl local rem st ... inode", addresses as 32-bit words in hex,
// each printed from memory (so read back into memory as is), the port as a number.
// The four-tuple the network lock matches for socket k (its local and peer addresses).
std::string connecting_peer(pid_t pid, int fd, int s, bool v6) {
  struct stat st {};
  if (::fstat(s, &st) < 0) fail_errno(errno, "pid {} fd {}: fstat", pid, fd);
  const std::string table = fmt::format("/proc/{}/net/{}", pid, v6 ? "tcp6" : "tcp");
  std::istringstream in(read_file(table));
  std::string line;
  while (std::getline(in, line)) {
    char local[64] = {}, remote[64] = {};
    unsigned state = 0;
    unsigned long long inode = 0;
    if (std::sscanf(line.c_str(), " %*d: %63s %63s %x %*s %*s %*s %*s %*s %llu", local, remote, &state, &inode) != 4 ||
        inode != st.st_ino)
      continue;
    const char* colon = std::strchr(remote, ':');
    if (!colon) break;
    const std::string hex(remote, static_cast<size_t>(colon - remote));
    const unsigned port = static_cast<unsigned>(std::strtoul(colon + 1, nullptr, 16));
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (!v6 && hex.size() == 8) {
      auto& sin = reinterpret_cast<sockaddr_in&>(ss);
      sin.sin_family = AF_INET;
      sin.sin_port = htons(static_cast<uint16_t>(port));
      sin.sin_addr.s_addr = static_cast<uint32_t>(std::strtoul(hex.c_str(), nullptr, 16));
      len = sizeof sin;
    } else if (v6 && hex.size() == 32) {
      auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
      sin6.sin6_family = AF_INET6;
      sin6.sin6_port = htons(static_cast<uint16_t>(port));
      for (int w = 0; w < 4; ++w) {
        const uint32_t word = static_cast<uint32_t>(std::strtoul(hex.substr(static_cast<size_t>(w) * 8, 8).c_str(), nullptr, 16));
        std::memcpy(&sin6.sin6_addr.s6_addr[w * 4], &word, 4);
      }
      len = sizeof sin6;
    } else {
      break;
    }
    return address_bytes(ss, len);
  }
  fail("pid {} fd {}: a TCP socket connecting (SYN_SENT) that {} does not list by its inode {}", pid, fd, table,
       st.st_ino);
}

}  // namespace

// Integer options programs set (mostly what they receive with each message, hop limits,
// marks, low-water marks), saved when they differ from a fresh socket's: the restore sets
// them again by the same numbers (restore/inet_sockets.cc). Ones a socket does not know
// (getsockopt fails) are skipped.
const std::vector<InetIntOption>& inet_int_options() {
  static const std::vector<InetIntOption> options{
      {SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT", 0},
      {SOL_SOCKET, SO_MARK, "SO_MARK", 0},
      {SOL_SOCKET, SO_TIMESTAMP_OLD, "SO_TIMESTAMP", 0},
      {SOL_SOCKET, SO_TIMESTAMPNS_OLD, "SO_TIMESTAMPNS", 0},
      {SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE", 0},
      {SOL_SOCKET, SO_DONTROUTE, "SO_DONTROUTE", 0},
      {SOL_SOCKET, SO_RXQ_OVFL, "SO_RXQ_OVFL", 0},
      {IPPROTO_IP, IP_TTL, "IP_TTL", AF_INET},
      {IPPROTO_IP, IP_PKTINFO, "IP_PKTINFO", AF_INET},
      {IPPROTO_IP, IP_RECVTOS, "IP_RECVTOS", AF_INET},
      {IPPROTO_IP, IP_RECVTTL, "IP_RECVTTL", AF_INET},
      {IPPROTO_IP, IP_RECVERR, "IP_RECVERR", AF_INET},
      {IPPROTO_IP, IP_RECVORIGDSTADDR, "IP_RECVORIGDSTADDR", AF_INET},
      {IPPROTO_IP, IP_MULTICAST_TTL, "IP_MULTICAST_TTL", AF_INET, SOCK_DGRAM},
      {IPPROTO_IP, IP_MULTICAST_LOOP, "IP_MULTICAST_LOOP", AF_INET, SOCK_DGRAM},
      {IPPROTO_IP, IP_MTU_DISCOVER, "IP_MTU_DISCOVER", AF_INET},
      {IPPROTO_IP, IP_TRANSPARENT, "IP_TRANSPARENT", AF_INET},
      {IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, "IP_BIND_ADDRESS_NO_PORT", AF_INET},
      {IPPROTO_IPV6, IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS", AF_INET6},
      {IPPROTO_IPV6, IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO", AF_INET6},
      {IPPROTO_IPV6, IPV6_RECVERR, "IPV6_RECVERR", AF_INET6},
      {IPPROTO_IPV6, IPV6_RECVTCLASS, "IPV6_RECVTCLASS", AF_INET6},
      {IPPROTO_IPV6, IPV6_RECVHOPLIMIT, "IPV6_RECVHOPLIMIT", AF_INET6},
      {IPPROTO_IPV6, IPV6_MULTICAST_HOPS, "IPV6_MULTICAST_HOPS", AF_INET6, SOCK_DGRAM},
      {IPPROTO_IPV6, IPV6_MULTICAST_LOOP, "IPV6_MULTICAST_LOOP", AF_INET6, SOCK_DGRAM},
      {IPPROTO_IPV6, IPV6_MTU_DISCOVER, "IPV6_MTU_DISCOVER", AF_INET6},
      {IPPROTO_IPV6, IPV6_TRANSPARENT, "IPV6_TRANSPARENT", AF_INET6},
      {IPPROTO_TCP, TCP_CORK, "TCP_CORK", 0},
      {IPPROTO_TCP, TCP_SYNCNT, "TCP_SYNCNT", 0},
      {IPPROTO_TCP, TCP_LINGER2, "TCP_LINGER2", 0},
      {IPPROTO_TCP, TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", 0},
      {IPPROTO_TCP, TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT", 0},
      {IPPROTO_TCP, TCP_FASTOPEN, "TCP_FASTOPEN", 0},
      {IPPROTO_UDP, UDP_SEGMENT, "UDP_SEGMENT", 0},
      {IPPROTO_UDP, UDP_GRO, "UDP_GRO", 0},
      {SOL_NETLINK, NETLINK_PKTINFO, "NETLINK_PKTINFO", AF_NETLINK},
      {SOL_NETLINK, NETLINK_BROADCAST_ERROR, "NETLINK_BROADCAST_ERROR", AF_NETLINK},
      {SOL_NETLINK, NETLINK_NO_ENOBUFS, "NETLINK_NO_ENOBUFS", AF_NETLINK},
      {SOL_NETLINK, NETLINK_LISTEN_ALL_NSID, "NETLINK_LISTEN_ALL_NSID", AF_NETLINK},
      {SOL_NETLINK, NETLINK_CAP_ACK, "NETLINK_CAP_ACK", AF_NETLINK},
      {SOL_NETLINK, NETLINK_EXT_ACK, "NETLINK_EXT_ACK", AF_NETLINK},
      {SOL_NETLINK, NETLINK_GET_STRICT_CHK, "NETLINK_GET_STRICT_CHK", AF_NETLINK},
  };
  return options;
}

std::optional<pb::FdEntry::Kind> InetCollector::kind_of(pid_t pid, int pidfd, int fd, const std::string& link) {
  if (link.rfind("socket:", 0) != 0) return std::nullopt;
  UniqueFd sock = grab(pidfd, pid, fd);
  const int family = get_int(sock.get(), SOL_SOCKET, SO_DOMAIN, pid, fd, "SO_DOMAIN");
  if (family == AF_UNIX) return std::nullopt;
  if (family == AF_INET || family == AF_INET6) {
    const int protocol = get_int(sock.get(), SOL_SOCKET, SO_PROTOCOL, pid, fd, "SO_PROTOCOL");
    const int type = get_int(sock.get(), SOL_SOCKET, SO_TYPE, pid, fd, "SO_TYPE");
    // By type too: a raw socket may carry the protocol number of TCP or UDP.
    if ((type == SOCK_STREAM && protocol == IPPROTO_TCP) ||
        (type == SOCK_DGRAM && (protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE)))
      return pb::FdEntry::INET_SOCKET;
    const char* what = type == SOCK_RAW                                                   ? "raw"
                       : protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6           ? "ICMP"
                       : type == SOCK_STREAM && protocol == IPPROTO_MPTCP                 ? "MPTCP"
                       : protocol == IPPROTO_SCTP                                         ? "SCTP"
                                                                                          : "other";
    throw UnsupportedError(fmt::format("pid {} fd {}: {} {} socket (type {}, protocol {}) is not supported: only TCP "
                                       "and UDP sockets are",
                                       pid, fd, family == AF_INET ? "IPv4" : "IPv6", what, type, protocol));
  }
  if (family == AF_NETLINK) return pb::FdEntry::NETLINK_SOCKET;
  const char* name = family_name(family);
  throw UnsupportedError(fmt::format("pid {} fd {}: {} is not supported ({})", pid, fd,
                                     name ? std::string(name) : fmt::format("socket of family {}", family), link));
}

void InetCollector::describe(pid_t pid, int pidfd, int fd, pb::FdEntry::Kind kind, uint32_t flags, uint64_t id) {
  UniqueFd sock = grab(pidfd, pid, fd);
  const int s = sock.get();
  const int type = get_int(s, SOL_SOCKET, SO_TYPE, pid, fd, "SO_TYPE");
  const int protocol = get_int(s, SOL_SOCKET, SO_PROTOCOL, pid, fd, "SO_PROTOCOL");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;

  if (kind == pb::FdEntry::NETLINK_SOCKET) {
    pb::NetlinkSocket n;
    n.set_id(id);
    n.set_type(static_cast<uint32_t>(type));
    n.set_protocol(static_cast<uint32_t>(protocol));
    n.set_flags(flags);
    if (::getsockname(s, reinterpret_cast<sockaddr*>(&ss), &len) < 0)
      fail_errno(errno, "pid {} fd {}: getsockname of a netlink socket", pid, fd);
    const auto& nl = reinterpret_cast<const sockaddr_nl&>(ss);
    n.set_portid(nl.nl_pid);
    n.set_groups(nl.nl_groups);
    n.set_bound(nl.nl_pid != 0);
    // Groups past the first 32 (joined with NETLINK_ADD_MEMBERSHIP) only show in the list.
    uint32_t masks[64] = {};
    socklen_t mlen = sizeof masks;
    if (::getsockopt(s, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, masks, &mlen) == 0) {
      for (uint32_t word = 1; word < std::min<uint32_t>(mlen / 4, 64); ++word)
        for (uint32_t bit = 0; bit < 32; ++bit)
          if (masks[word] & (1u << bit)) n.add_more_groups(word * 32 + bit + 1);
    }
    const Defaults& d = defaults_for(AF_NETLINK, type, protocol);
    const int rcv = get_int(s, SOL_SOCKET, SO_RCVBUF, pid, fd, "SO_RCVBUF");
    const int snd = get_int(s, SOL_SOCKET, SO_SNDBUF, pid, fd, "SO_SNDBUF");
    if (rcv != d.rcvbuf) n.set_rcvbuf(rcv);
    if (snd != d.sndbuf) n.set_sndbuf(snd);
    read_int_options(s, d, *n.mutable_more_options());
    // Messages the kernel queued and the program has not read (notifications, mostly) cannot
    // be queued again as the kernel's: say so rather than drop them unsaid.
    char byte;
    const ssize_t queued = ::recv(s, &byte, 1, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);
    if (queued > 0)
      log::warn("pid {} fd {}: netlink socket of protocol {} has messages it has not read yet (the first of {} "
                "bytes); they are not kept: the restored socket starts with an empty queue",
                pid, fd, protocol, queued);
    netlink_.push_back(std::move(n));
    return;
  }

  pb::InetSocket k;
  k.set_id(id);
  k.set_family(static_cast<uint32_t>(get_int(s, SOL_SOCKET, SO_DOMAIN, pid, fd, "SO_DOMAIN")));
  k.set_type(static_cast<uint32_t>(type));
  k.set_protocol(static_cast<uint32_t>(protocol));
  k.set_flags(flags);
  const bool tcp = protocol == IPPROTO_TCP;
  const bool v6 = k.family() == AF_INET6;
  if (::getsockname(s, reinterpret_cast<sockaddr*>(&ss), &len) < 0) fail_errno(errno, "pid {} fd {}: getsockname", pid, fd);
  // An unbound socket shows the wildcard address and port 0.
  const uint16_t port = v6 ? reinterpret_cast<sockaddr_in6&>(ss).sin6_port : reinterpret_cast<sockaddr_in&>(ss).sin_port;
  if (port != 0) k.set_local(address_bytes(ss, len));
  len = sizeof ss;
  if (::getpeername(s, reinterpret_cast<sockaddr*>(&ss), &len) == 0) k.set_peer(address_bytes(ss, len));
  else if (errno != ENOTCONN) fail_errno(errno, "pid {} fd {}: getpeername", pid, fd);

  int state = k.peer().empty() ? kClose : kEstablished;
  if (tcp) {
    tcp_info info{};
    socklen_t ilen = sizeof info;
    if (::getsockopt(s, IPPROTO_TCP, TCP_INFO, &info, &ilen) < 0) fail_errno(errno, "pid {} fd {}: TCP_INFO", pid, fd);
    state = info.tcpi_state;
    const std::string what = fmt::format("TCP {} {} -> {}", v6 ? "IPv6" : "IPv4", launcher::socket_address_text(k.local()),
                                         launcher::socket_address_text(k.peer()));
    if (state == kListen) {
      // For a listener TCP_INFO gives the backlog (tcpi_sacked) and the connections the
      // kernel accepted that the program has not (tcpi_unacked).
      k.set_backlog(info.tcpi_sacked);
      // A passing state (common/error.h): the dump tries again while the program accepts them.
      if (info.tcpi_unacked != 0)
        throw PassingStateError(fmt::format("pid {} fd {}: listening {} has {} connection(s) the program has not "
                                            "accepted yet, which restore could not queue again",
                                            pid, fd, launcher::socket_address_text(k.local()), info.tcpi_unacked));
    } else if (connected(state)) {
      if (!tcp_established_)
        throw UnsupportedError(fmt::format("pid {} fd {}: {} is {}: dump with --tcp-established to checkpoint it "
                                           "(its packets are held by a network lock until the restore)",
                                           pid, fd, what,
                                           state == kEstablished
                                               ? std::string("an established connection")
                                               : fmt::format("a half-closed connection ({})", tcp_state_name(state))));
      // Shut down for reading (the state stays established): a peek finds the end of the
      // stream at once instead of nothing to read. Only visible with nothing queued, and only
      // told apart from the peer's FIN while none came.
      int inq = 0;
      char byte;
      if (state != kCloseWait && state != kLastAck && state != kClosing && ::ioctl(s, SIOCINQ, &inq) == 0 &&
          inq == 0 && ::recv(s, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
        k.set_shut_rd(true);
    } else if (state == kSynSent) {
      // Its SYN went out and nothing came back yet: restore connects again (a SYN again, as
      // after a lost one), once the namespace has its routes (restore/inet_sockets.h).
      k.set_peer(connecting_peer(pid, fd, s, v6));
      log::debug("pid {} fd {}: TCP {} connecting to {}", pid, fd, launcher::socket_address_text(k.local()),
                 launcher::socket_address_text(k.peer()));
      if (tcp_established_ && !k.local().empty()) connecting_.push_back(inet_.size());  // k's index once pushed
    } else if (state != kClose) {
      throw UnsupportedError(fmt::format("pid {} fd {}: {} is in state {}: only listening, connecting, established, "
                                         "half-closed and unconnected TCP sockets are supported",
                                         pid, fd, what, tcp_state_name(state)));
    }
  }
  k.set_state(static_cast<uint32_t>(state));

  // Options.
  pb::InetOptions& o = *k.mutable_options();
  o.set_reuseaddr(get_int(s, SOL_SOCKET, SO_REUSEADDR, pid, fd, "SO_REUSEADDR") != 0);
  o.set_reuseport(get_int(s, SOL_SOCKET, SO_REUSEPORT, pid, fd, "SO_REUSEPORT") != 0);
  o.set_keepalive(get_int(s, SOL_SOCKET, SO_KEEPALIVE, pid, fd, "SO_KEEPALIVE") != 0);
  o.set_broadcast(get_int(s, SOL_SOCKET, SO_BROADCAST, pid, fd, "SO_BROADCAST") != 0);
  o.set_priority(get_int(s, SOL_SOCKET, SO_PRIORITY, pid, fd, "SO_PRIORITY"));
  {
    // Buffer sizes only when they differ from what a fresh socket of the kind gets here
    // (setting them turns TCP's automatic sizing off), and likewise the other options; one
    // fresh socket per kind.
    const Defaults& d = defaults_for(static_cast<int>(k.family()), type, protocol);
    const int rcv = get_int(s, SOL_SOCKET, SO_RCVBUF, pid, fd, "SO_RCVBUF");
    const int snd = get_int(s, SOL_SOCKET, SO_SNDBUF, pid, fd, "SO_SNDBUF");
    if (rcv != d.rcvbuf) o.set_rcvbuf(rcv);
    if (snd != d.sndbuf) o.set_sndbuf(snd);
    read_int_options(s, d, *k.mutable_more_options());
    if (tcp) {
      char cc[32] = {};
      socklen_t cclen = sizeof cc - 1;
      if (::getsockopt(s, IPPROTO_TCP, TCP_CONGESTION, cc, &cclen) == 0 && d.congestion != cc) k.set_congestion(cc);
    }
  }
  for (int name : {SO_RCVTIMEO_OLD, SO_SNDTIMEO_OLD}) {
    timeval tv{};
    socklen_t tlen = sizeof tv;
    if (::getsockopt(s, SOL_SOCKET, name, &tv, &tlen) < 0) fail_errno(errno, "pid {} fd {}: SO_RCVTIMEO/SNDTIMEO", pid, fd);
    const uint64_t us = static_cast<uint64_t>(tv.tv_sec) * 1000000 + static_cast<uint64_t>(tv.tv_usec);
    if (name == SO_RCVTIMEO_OLD) o.set_rcvtimeo_us(us);
    else o.set_sndtimeo_us(us);
  }
  {
    linger l{};
    socklen_t llen = sizeof l;
    if (::getsockopt(s, SOL_SOCKET, SO_LINGER, &l, &llen) < 0) fail_errno(errno, "pid {} fd {}: SO_LINGER", pid, fd);
    o.set_linger(l.l_onoff != 0);
    o.set_linger_s(l.l_linger);
  }
  if (v6) {
    o.set_v6only(get_int(s, IPPROTO_IPV6, IPV6_V6ONLY, pid, fd, "IPV6_V6ONLY") != 0);
    o.set_tclass(get_int(s, IPPROTO_IPV6, IPV6_TCLASS, pid, fd, "IPV6_TCLASS"));
    o.set_freebind(get_int(s, IPPROTO_IPV6, IPV6_FREEBIND, pid, fd, "IPV6_FREEBIND") != 0);
  } else {
    o.set_tos(get_int(s, IPPROTO_IP, IP_TOS, pid, fd, "IP_TOS"));
    o.set_freebind(get_int(s, IPPROTO_IP, IP_FREEBIND, pid, fd, "IP_FREEBIND") != 0);
  }
  if (tcp) {
    o.set_nodelay(get_int(s, IPPROTO_TCP, TCP_NODELAY, pid, fd, "TCP_NODELAY") != 0);
    o.set_keepidle(get_int(s, IPPROTO_TCP, TCP_KEEPIDLE, pid, fd, "TCP_KEEPIDLE"));
    o.set_keepintvl(get_int(s, IPPROTO_TCP, TCP_KEEPINTVL, pid, fd, "TCP_KEEPINTVL"));
    o.set_keepcnt(get_int(s, IPPROTO_TCP, TCP_KEEPCNT, pid, fd, "TCP_KEEPCNT"));
    o.set_user_timeout_ms(static_cast<uint32_t>(get_int(s, IPPROTO_TCP, TCP_USER_TIMEOUT, pid, fd, "TCP_USER_TIMEOUT")));
  } else {
    // Datagrams waiting to be read, each with its sender, peeked one by one (SO_PEEK_OFF
    // moves past each) and left in place.
    const int old_peek = get_int(s, SOL_SOCKET, SO_PEEK_OFF, pid, fd, "SO_PEEK_OFF");
    set_int(s, SOL_SOCKET, SO_PEEK_OFF, 0, pid, fd, "SO_PEEK_OFF");
    std::string buf(65536, '\0');
    size_t total = 0;
    for (;;) {
      sockaddr_storage from{};
      iovec iov{buf.data(), buf.size()};
      msghdr msg{};
      msg.msg_name = &from;
      msg.msg_namelen = sizeof from;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      ssize_t n = ::recvmsg(s, &msg, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0) {
        set_int(s, SOL_SOCKET, SO_PEEK_OFF, old_peek, pid, fd, "SO_PEEK_OFF");
        fail_errno(errno, "pid {} fd {}: peek at the queued datagrams", pid, fd);
      }
      pb::Datagram* d = k.add_datagrams();
      d->set_source(address_bytes(from, msg.msg_namelen));
      d->set_data(buf.data(), std::min<size_t>(static_cast<size_t>(n), buf.size()));
      total += static_cast<size_t>(n);
      if (k.datagrams_size() > 1 << 16) break;  // far beyond any receive buffer
    }
    set_int(s, SOL_SOCKET, SO_PEEK_OFF, old_peek, pid, fd, "SO_PEEK_OFF");
    if (total) log::debug("pid {} fd {}: {} datagram(s), {} bytes queued", pid, fd, k.datagrams_size(), total);
  }
  if (!tcp && type == SOCK_DGRAM)
    read_multicast_memberships(s, static_cast<int>(k.family()), pid, fd, *k.mutable_memberships());
  inet_.push_back(std::move(k));
  if (tcp && connected(state)) pending_.push_back({pid, fd, inet_.size() - 1, std::move(sock)});
}

void InetCollector::read_int_options(int s, const Defaults& d,
                                     google::protobuf::RepeatedPtrField<pb::IntOption>& out) {
  const auto& list = inet_int_options();
  for (size_t i = 0; i < list.size(); ++i) {
    if (!d.known[i]) continue;
    int v = 0;
    socklen_t vlen = sizeof v;
    if (::getsockopt(s, list[i].level, list[i].name, &v, &vlen) < 0 || v == d.values[i]) continue;
    pb::IntOption* x = out.Add();
    x->set_level(list[i].level);
    x->set_name(list[i].name);
    x->set_value(v);
  }
}

const InetCollector::Defaults& InetCollector::defaults_for(int family, int type, int protocol) {
  const auto key = std::make_tuple(family, type, protocol);
  auto it = defaults_.find(key);
  if (it != defaults_.end()) return it->second;
  Defaults d;
  const auto& list = inet_int_options();
  d.known.assign(list.size(), false);
  d.values.assign(list.size(), 0);
  UniqueFd fresh(::socket(family, type | SOCK_CLOEXEC, protocol));
  if (fresh) {
    auto get = [&](int level, int name, int& v) {
      socklen_t len = sizeof v;
      return ::getsockopt(fresh.get(), level, name, &v, &len) == 0;
    };
    get(SOL_SOCKET, SO_RCVBUF, d.rcvbuf);
    get(SOL_SOCKET, SO_SNDBUF, d.sndbuf);
    for (size_t i = 0; i < list.size(); ++i)
      if ((list[i].family == 0 || list[i].family == family) && (list[i].type == 0 || list[i].type == type))
        d.known[i] = get(list[i].level, list[i].name, d.values[i]);
    char cc[32] = {};
    socklen_t cclen = sizeof cc - 1;
    if (protocol == IPPROTO_TCP && ::getsockopt(fresh.get(), IPPROTO_TCP, TCP_CONGESTION, cc, &cclen) == 0)
      d.congestion = cc;
  }
  return defaults_.emplace(key, std::move(d)).first->second;
}

void InetCollector::finish_process(pid_t pid) {
  if (pending_.empty() && connecting_.empty()) return;
  std::vector<launcher::NetLock::Connection> connections;
  for (size_t i : connecting_) connections.push_back(launcher::locked_connection(inet_[i].local(), inet_[i].peer()));
  for (const auto& p : pending_) connections.push_back(launcher::locked_connection(inet_[p.index].local(), inet_[p.index].peer()));
  lock_.lock(pid, connections);
  for (size_t i : connecting_) inet_[i].set_lock_table(lock_.table());
  connecting_.clear();
  fault_pause("dump-network-locked");  // tests look at the lock here
  for (auto& p : pending_) read_connection(p);
  pending_.clear();
  fault_point("dump-after-tcp-repair");  // tests: a dump that fails with connections in repair mode
}

void InetCollector::read_connection(Pending& p) {
  const int s = p.sock.get();
  const pid_t pid = p.pid;
  const int fd = p.fd;
  pb::InetSocket& k = inet_[p.index];
  pb::TcpConnection& c = *k.mutable_tcp();
  c.set_lock_table(lock_.table());
  set_int(s, IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON, pid, fd, "TCP_REPAIR on");
  repaired_.push_back(std::move(p.sock));

  int outq = 0, unsent = 0, inq = 0;
  if (::ioctl(s, SIOCOUTQ, &outq) < 0) fail_errno(errno, "pid {} fd {}: SIOCOUTQ", pid, fd);
  if (::ioctl(s, SIOCOUTQNSD, &unsent) < 0) fail_errno(errno, "pid {} fd {}: SIOCOUTQNSD", pid, fd);
  if (::ioctl(s, SIOCINQ, &inq) < 0) fail_errno(errno, "pid {} fd {}: SIOCINQ", pid, fd);

  auto read_queue = [&](int queue, int size, const char* name) {
    set_int(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue, pid, fd, "TCP_REPAIR_QUEUE");
    const uint32_t seq = static_cast<uint32_t>(get_int(s, IPPROTO_TCP, TCP_QUEUE_SEQ, pid, fd, "TCP_QUEUE_SEQ"));
    std::string data(static_cast<size_t>(size), '\0');
    if (size > 0) {
      ssize_t n;
      do n = ::recv(s, data.data(), data.size(), MSG_PEEK | MSG_DONTWAIT);
      while (n < 0 && errno == EINTR);
      if (n < 0) fail_errno(errno, "pid {} fd {}: read the {} queue in repair mode", pid, fd, name);
      if (n != size) fail("pid {} fd {}: the {} queue holds {} bytes, {} could be read", pid, fd, name, size, n);
    }
    return std::make_pair(seq, std::move(data));
  };
  // The FINs take a sequence number each but no byte of the queues: this side's is counted
  // in SIOCOUTQ (and in SIOCOUTQNSD while not sent) until the peer acknowledges it, and in
  // the send queue's sequence (write_seq) from the shutdown on; the peer's in the receive
  // queue's (rcv_nxt), never in SIOCINQ. The image has the data's numbers alone.
  const int state = static_cast<int>(k.state());
  const bool our_fin = state == kFinWait1 || state == kFinWait2 || state == kClosing || state == kLastAck;
  const bool fin_acked = state == kFinWait2;
  const bool peer_fin = state == kCloseWait || state == kLastAck || state == kClosing;
  const int unsent_with_fin = unsent;
  if (our_fin && !fin_acked) {
    if (outq < 1) fail("pid {} fd {}: {} with nothing in its send queue, not even its FIN", pid, fd, tcp_state_name(state));
    --outq;
    if (unsent > 0) --unsent;
  }
  auto [write_seq, send_data] = read_queue(TCP_SEND_QUEUE, outq, "send");
  auto [rcv_nxt, recv_data] = read_queue(TCP_RECV_QUEUE, inq, "receive");
  set_int(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, pid, fd, "TCP_REPAIR_QUEUE");
  if (our_fin) --write_seq;
  if (peer_fin) --rcv_nxt;
  c.set_snd_una(write_seq - static_cast<uint32_t>(outq));
  c.set_send_queue(std::move(send_data));
  c.set_unsent(static_cast<uint32_t>(unsent));
  c.set_rcv_copied(rcv_nxt - static_cast<uint32_t>(inq));
  c.set_recv_queue(std::move(recv_data));
  if (our_fin) {
    c.set_fin_queued(true);
    // The FIN is the last thing to send: while anything of the queue is unsent, so is it.
    c.set_fin_sent(fin_acked || unsent_with_fin == 0);
    c.set_fin_acked(fin_acked);
  }
  c.set_peer_fin(peer_fin);
  c.set_peer_fin_first(state == kCloseWait || state == kLastAck);

  tcp_info info{};
  socklen_t ilen = sizeof info;
  if (::getsockopt(s, IPPROTO_TCP, TCP_INFO, &info, &ilen) < 0) fail_errno(errno, "pid {} fd {}: TCP_INFO", pid, fd);
  c.set_sack(info.tcpi_options & TCPI_OPT_SACK);
  c.set_timestamps(info.tcpi_options & TCPI_OPT_TIMESTAMPS);
  c.set_wscale(info.tcpi_options & TCPI_OPT_WSCALE);
  c.set_snd_wscale(info.tcpi_snd_wscale);
  c.set_rcv_wscale(info.tcpi_rcv_wscale);
  c.set_mss(static_cast<uint32_t>(get_int(s, IPPROTO_TCP, TCP_MAXSEG, pid, fd, "TCP_MAXSEG")));
  c.set_timestamp(static_cast<uint32_t>(get_int(s, IPPROTO_TCP, TCP_TIMESTAMP, pid, fd, "TCP_TIMESTAMP")));
  tcp_repair_window w{};
  socklen_t wlen = sizeof w;
  if (::getsockopt(s, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, &wlen) < 0)
    fail_errno(errno, "pid {} fd {}: TCP_REPAIR_WINDOW", pid, fd);
  c.set_snd_wl1(w.snd_wl1);
  c.set_snd_wnd(w.snd_wnd);
  c.set_max_window(w.max_window);
  c.set_rcv_wnd(w.rcv_wnd);
  c.set_rcv_wup(w.rcv_wup);
  log::debug("pid {} fd {}: TCP {} -> {} ({}): {} bytes to send ({} never sent), {} bytes to read", pid, fd,
             launcher::socket_address_text(k.local()), launcher::socket_address_text(k.peer()), tcp_state_name(state),
             outq, unsent, inq);
  if (leave_running_) {
    // The job goes on with this connection: out of repair mode at once (the lock still holds
    // its packets until the dump ends).
    set_int(s, IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP, pid, fd, "TCP_REPAIR off");
    repaired_.pop_back();
  }
}

void InetCollector::hand_over_to_kill() {
  handed_over_ = true;
  if (!lock_.active()) return;
  lock_.keep();
  // In the host's namespace the lock outlives the job until a restore removes it.
  struct stat ours {}, theirs {};
  if (::stat("/proc/self/ns/net", &ours) == 0 && ::fstat(lock_.netns(), &theirs) == 0 && ours.st_ino == theirs.st_ino)
    log::info("the network lock (nftables table inet {}) holds the packets of the dumped TCP connections until the "
              "restore removes it; without a restore, remove it with `nft delete table inet {}`",
              lock_.table(), lock_.table());
}

InetCollector::~InetCollector() {
  if (!handed_over_) {
    for (auto& s : repaired_) {
      int off = TCP_REPAIR_OFF_NO_WP;
      if (::setsockopt(s.get(), IPPROTO_TCP, TCP_REPAIR, &off, sizeof off) < 0)
        log::error("could not take a TCP connection of the job out of repair mode: {}", describe_errno(errno));
    }
  }
  // With the job killed, our copies are the last references: closing them in repair mode
  // sends neither FIN nor RST.
  repaired_.clear();
}

void InetCollector::write_images(const std::filesystem::path& dir) const {
  using images::ImageType;
  images::ImageWriter inet(dir / images::image_file_name(ImageType::InetSockets), ImageType::InetSockets);
  for (const auto& r : inet_) inet.write(r);
  inet.close();
  images::ImageWriter nl(dir / images::image_file_name(ImageType::NetlinkSockets), ImageType::NetlinkSockets);
  for (const auto& r : netlink_) nl.write(r);
  nl.close();
}

}  // namespace stasis::dump
