#include "restore/inet_sockets.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>

#include "common/error.h"
#include "common/proc.h"
#include "common/log.h"
#include "common/ns_thread.h"
#include "launcher/net_lock.h"
#include "restore/socket_copies.h"
#include "restore/tcp_segment.h"

namespace stasis::restore {

namespace {

constexpr uint32_t kEstablished = 1, kFinWait1 = 4, kFinWait2 = 5, kCloseWait = 8, kLastAck = 9, kClosing = 11;
// TCP option kinds (RFC 793, 7323, 2018), as TCP_REPAIR_OPTIONS takes them.
constexpr uint32_t kOptMss = 2, kOptWindow = 3, kOptSackPerm = 4, kOptTimestamp = 8;
constexpr uint32_t kListen = 10;
constexpr uint32_t kSynSent = 2;

// A TCP connection (established, or half or wholly closed with the peer still there): made
// with TCP_REPAIR (dump/inet_sockets.cc says which states).
bool connected(const pb::InetSocket& k) {
  if (k.protocol() != IPPROTO_TCP) return false;
  const uint32_t s = k.state();
  return s == kEstablished || s == kFinWait1 || s == kFinWait2 || s == kCloseWait || s == kLastAck || s == kClosing;
}

const char* state_name(uint32_t state) {
  switch (state) {
    case kEstablished: return "ESTABLISHED";
    case kFinWait1: return "FIN_WAIT1";
    case kFinWait2: return "FIN_WAIT2";
    case kCloseWait: return "CLOSE_WAIT";
    case kLastAck: return "LAST_ACK";
    case kClosing: return "CLOSING";
    default: return "?";
  }
}

sockaddr_storage to_sockaddr(const std::string& bytes, socklen_t& len) {
  sockaddr_storage ss{};
  len = static_cast<socklen_t>(std::min(bytes.size(), sizeof ss));
  std::memcpy(&ss, bytes.data(), len);
  return ss;
}

void set_int(int s, int level, int name, int value, const std::string& what, const char* option) {
  if (::setsockopt(s, level, name, &value, sizeof value) < 0) fail_errno(errno, "{}: setsockopt {} {}", what, option, value);
}

void set_buffer(int s, int force, int plain, int reported, const std::string& what, const char* option) {
  // getsockopt reports twice what was asked (the kernel's bookkeeping share).
  const int value = reported / 2;
  if (::setsockopt(s, SOL_SOCKET, force, &value, sizeof value) == 0) return;
  set_int(s, SOL_SOCKET, plain, value, what, option);
}

void apply_options(int s, const pb::InetSocket& k, const std::string& what) {
  const pb::InetOptions& o = k.options();
  const bool v6 = k.family() == AF_INET6;
  const bool tcp = k.protocol() == IPPROTO_TCP;
  if (o.reuseaddr()) set_int(s, SOL_SOCKET, SO_REUSEADDR, 1, what, "SO_REUSEADDR");
  if (o.reuseport()) set_int(s, SOL_SOCKET, SO_REUSEPORT, 1, what, "SO_REUSEPORT");
  if (o.keepalive()) set_int(s, SOL_SOCKET, SO_KEEPALIVE, 1, what, "SO_KEEPALIVE");
  if (o.broadcast()) set_int(s, SOL_SOCKET, SO_BROADCAST, 1, what, "SO_BROADCAST");
  if (o.priority()) set_int(s, SOL_SOCKET, SO_PRIORITY, o.priority(), what, "SO_PRIORITY");
  if (o.rcvbuf()) set_buffer(s, SO_RCVBUFFORCE, SO_RCVBUF, o.rcvbuf(), what, "SO_RCVBUF");
  if (o.sndbuf()) set_buffer(s, SO_SNDBUFFORCE, SO_SNDBUF, o.sndbuf(), what, "SO_SNDBUF");
  for (auto [name, us] : {std::pair{SO_RCVTIMEO_OLD, o.rcvtimeo_us()}, std::pair{SO_SNDTIMEO_OLD, o.sndtimeo_us()}}) {
    if (us == 0) continue;
    timeval tv{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
    if (::setsockopt(s, SOL_SOCKET, name, &tv, sizeof tv) < 0) fail_errno(errno, "{}: setsockopt SO_RCVTIMEO/SNDTIMEO", what);
  }
  if (o.linger()) {
    linger l{1, o.linger_s()};
    if (::setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l) < 0) fail_errno(errno, "{}: setsockopt SO_LINGER", what);
  }
  if (v6) {
    // IPV6_V6ONLY's default is a sysctl: set it either way.
    set_int(s, IPPROTO_IPV6, IPV6_V6ONLY, o.v6only() ? 1 : 0, what, "IPV6_V6ONLY");
    if (o.tclass()) set_int(s, IPPROTO_IPV6, IPV6_TCLASS, o.tclass(), what, "IPV6_TCLASS");
    if (o.freebind()) set_int(s, IPPROTO_IPV6, IPV6_FREEBIND, 1, what, "IPV6_FREEBIND");
  } else {
    if (o.tos()) set_int(s, IPPROTO_IP, IP_TOS, o.tos(), what, "IP_TOS");
    if (o.freebind()) set_int(s, IPPROTO_IP, IP_FREEBIND, 1, what, "IP_FREEBIND");
  }
  for (const auto& x : k.more_options())
    set_int(s, x.level(), x.name(), x.value(), what, fmt::format("{}/{}", x.level(), x.name()).c_str());
  if (!k.congestion().empty() &&
      ::setsockopt(s, IPPROTO_TCP, TCP_CONGESTION, k.congestion().data(), static_cast<socklen_t>(k.congestion().size())) < 0)
    fail_errno(errno, "{}: setsockopt TCP_CONGESTION {} (is its module loaded here?)", what, k.congestion());
  if (tcp) {
    if (o.nodelay()) set_int(s, IPPROTO_TCP, TCP_NODELAY, 1, what, "TCP_NODELAY");
    if (o.keepidle()) set_int(s, IPPROTO_TCP, TCP_KEEPIDLE, o.keepidle(), what, "TCP_KEEPIDLE");
    if (o.keepintvl()) set_int(s, IPPROTO_TCP, TCP_KEEPINTVL, o.keepintvl(), what, "TCP_KEEPINTVL");
    if (o.keepcnt()) set_int(s, IPPROTO_TCP, TCP_KEEPCNT, o.keepcnt(), what, "TCP_KEEPCNT");
    if (o.user_timeout_ms())
      set_int(s, IPPROTO_TCP, TCP_USER_TIMEOUT, static_cast<int>(o.user_timeout_ms()), what, "TCP_USER_TIMEOUT");
  }
}

// Writes data into the queue selected with TCP_REPAIR_QUEUE (or, out of repair mode, sends it).
void write_queue(int s, const char* data, size_t size, const std::string& what, const char* queue) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::send(s, data + done, size - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail_errno(n < 0 ? errno : EIO, "{}: put {} bytes back into its {} queue ({} went in)", what, size, queue, done);
    done += static_cast<size_t>(n);
  }
}

int tcp_state_of(int s, const std::string& what) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(s, IPPROTO_TCP, TCP_INFO, &info, &len) < 0) fail_errno(errno, "{}: TCP_INFO", what);
  return info.tcpi_state;
}

// Waits (up to 2 s) until the connection is in state: a made-up segment goes through the
// loopback's receive path, most often before sendto() returns, but not always.
void wait_for_state(int s, uint32_t state, const std::string& what, const char* after) {
  for (int i = 0;; ++i) {
    const int now = tcp_state_of(s, what);
    if (static_cast<uint32_t>(now) == state) return;
    if (i == 2000)
      fail("{}: still {} after {}, not {} as at the dump (did the network lock of this namespace drop it?)", what,
           state_name(static_cast<uint32_t>(now)), after, state_name(state));
    ::usleep(1000);
  }
}

// The FINs of a half-closed connection, in repair mode, once its queues are in and it is
// established: each comes back in the order it came, as the state says. This side's FIN, when
// it had gone out, by a shutdown while the send queue is selected (TCP takes it as sent, and
// sends it again only if no acknowledgement comes, as after a loss); one still waiting
// behind unsent bytes is left to finish_inet_sockets. The peer's FIN, and its acknowledgement
// of ours, are made up as from the peer (restore/tcp_segment.h): the sequence numbers move on
// by one for each FIN exactly as they had.
void restore_fins(int s, const pb::InetSocket& k, const std::string& what) {
  const pb::TcpConnection& c = k.tcp();
  if (!c.fin_sent() && !c.peer_fin()) return;
  MadeUpSegment segment;
  segment.seq = c.rcv_copied() + static_cast<uint32_t>(c.recv_queue().size());
  segment.ack = c.snd_una();
  segment.window = static_cast<uint16_t>(std::min<uint32_t>(c.snd_wnd() >> (c.wscale() ? c.snd_wscale() : 0), 65535));
  segment.timestamps = c.timestamps();
  auto peer_fin = [&] {
    segment.fin = true;
    send_made_up_segment(k, segment, what);
    segment.fin = false;
    ++segment.seq;
  };
  if (c.peer_fin() && c.peer_fin_first()) {
    peer_fin();
    wait_for_state(s, kCloseWait, what, "its peer's FIN");
  }
  if (c.fin_sent()) {
    set_int(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, what, "TCP_REPAIR_QUEUE");
    if (::shutdown(s, SHUT_WR) < 0) fail_errno(errno, "{}: shutdown for writing in repair mode (its FIN)", what);
    set_int(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, what, "TCP_REPAIR_QUEUE");
  }
  if (c.peer_fin() && !c.peer_fin_first()) peer_fin();
  if (c.fin_acked()) {
    segment.ack = c.snd_una() + static_cast<uint32_t>(c.send_queue().size()) + 1;
    send_made_up_segment(k, segment, what);
  }
  // The state it had, unless its FIN waits behind unsent bytes (then it is still
  // established, or CLOSE_WAIT, until finish_inet_sockets).
  if (c.fin_sent() || !c.fin_queued()) wait_for_state(s, k.state(), what, "its FINs");
}

void restore_connection(int s, const pb::InetSocket& k, const std::string& what) {
  const pb::TcpConnection& c = k.tcp();
  set_int(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, what, "TCP_REPAIR_QUEUE");
  set_int(s, IPPROTO_TCP, TCP_QUEUE_SEQ, static_cast<int>(c.snd_una()), what, "TCP_QUEUE_SEQ (send)");
  set_int(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, what, "TCP_REPAIR_QUEUE");
  set_int(s, IPPROTO_TCP, TCP_QUEUE_SEQ, static_cast<int>(c.rcv_copied()), what, "TCP_QUEUE_SEQ (receive)");
  socklen_t len = 0;
  sockaddr_storage peer = to_sockaddr(k.peer(), len);
  // In repair mode connect() sends nothing: the socket is established at once.
  if (::connect(s, reinterpret_cast<sockaddr*>(&peer), len) < 0) fail_errno(errno, "{}: connect in repair mode", what);
  std::vector<tcp_repair_opt> opts;
  opts.push_back({kOptMss, c.mss()});
  if (c.wscale()) opts.push_back({kOptWindow, c.snd_wscale() | (c.rcv_wscale() << 16)});
  if (c.sack()) opts.push_back({kOptSackPerm, 0});
  if (c.timestamps()) opts.push_back({kOptTimestamp, 0});
  if (::setsockopt(s, IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts.data(),
                   static_cast<socklen_t>(opts.size() * sizeof(tcp_repair_opt))) < 0)
    fail_errno(errno, "{}: setsockopt TCP_REPAIR_OPTIONS", what);
  if (c.timestamps()) set_int(s, IPPROTO_TCP, TCP_TIMESTAMP, static_cast<int>(c.timestamp()), what, "TCP_TIMESTAMP");
  // Sent but not acknowledged: TCP takes it as sent, and sends it again if no ACK comes.
  const size_t sent = c.send_queue().size() - std::min<size_t>(c.unsent(), c.send_queue().size());
  set_int(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, what, "TCP_REPAIR_QUEUE");
  write_queue(s, c.send_queue().data(), sent, what, "send");
  set_int(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, what, "TCP_REPAIR_QUEUE");
  write_queue(s, c.recv_queue().data(), c.recv_queue().size(), what, "receive");
  set_int(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, what, "TCP_REPAIR_QUEUE");
  tcp_repair_window w{c.snd_wl1(), c.snd_wnd(), c.max_window(), c.rcv_wnd(), c.rcv_wup()};
  // The peer's FIN is not in yet: the window's left edge may not be past the data (the
  // kernel refuses it), and its right edge stays where it was.
  const uint32_t rcv_nxt = c.rcv_copied() + static_cast<uint32_t>(c.recv_queue().size());
  if (c.peer_fin() && static_cast<int32_t>(w.rcv_wup - rcv_nxt) > 0) {
    w.rcv_wnd += w.rcv_wup - rcv_nxt;
    w.rcv_wup = rcv_nxt;
  }
  if (::setsockopt(s, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, sizeof w) < 0)
    fail_errno(errno, "{}: setsockopt TCP_REPAIR_WINDOW", what);
  restore_fins(s, k, what);
}

// A queued datagram goes back by being sent again from its sender's address (a socket bound
// there, however foreign, with IP_TRANSPARENT) to the socket's own.
void requeue_datagrams(int s, const pb::InetSocket& k, const std::string& what) {
  socklen_t dest_len = sizeof(sockaddr_storage);
  sockaddr_storage dest{};
  if (::getsockname(s, reinterpret_cast<sockaddr*>(&dest), &dest_len) < 0) fail_errno(errno, "{}: getsockname", what);
  if (dest.ss_family == AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(dest);
    if (in.sin_addr.s_addr == htonl(INADDR_ANY)) in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(dest);
    if (IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr)) in6.sin6_addr = in6addr_loopback;
  }
  for (const auto& d : k.datagrams()) {
    if (d.source() == k.local()) {
      // Sent to itself: it sends it again.
      if (::sendto(s, d.data().data(), d.data().size(), 0, reinterpret_cast<sockaddr*>(&dest), dest_len) < 0)
        fail_errno(errno, "{}: queue a datagram of {} bytes it sent itself again", what, d.data().size());
      continue;
    }
    socklen_t src_len = 0;
    sockaddr_storage src = to_sockaddr(d.source(), src_len);
    UniqueFd sender(::socket(src.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, static_cast<int>(k.protocol())));
    if (!sender) fail_errno(errno, "{}: socket for a queued datagram", what);
    const int v6 = src.ss_family == AF_INET6;
    set_int(sender.get(), SOL_SOCKET, SO_REUSEADDR, 1, what, "SO_REUSEADDR");
    set_int(sender.get(), v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, 1, what,
            "IP_TRANSPARENT");
    if (::bind(sender.get(), reinterpret_cast<sockaddr*>(&src), src_len) < 0)
      fail_errno(errno, "{}: bind to {}, the sender of a queued datagram, to queue it again", what,
                 launcher::socket_address_text(d.source()));
    if (::sendto(sender.get(), d.data().data(), d.data().size(), 0, reinterpret_cast<sockaddr*>(&dest), dest_len) < 0)
      fail_errno(errno, "{}: queue a datagram of {} bytes from {} again", what, d.data().size(), launcher::socket_address_text(d.source()));
  }
  // Loopback delivery is synchronous: each is queued by now.
}

}  // namespace

UniqueFd open_inet_socket(const pb::InetSocket& k) {
  const bool tcp = k.protocol() == IPPROTO_TCP;
  const std::string what = fmt::format("{} {} socket {} -> {}", tcp ? "TCP" : "UDP",
                                       k.family() == AF_INET6 ? "IPv6" : "IPv4", launcher::socket_address_text(k.local()), launcher::socket_address_text(k.peer()));
  UniqueFd sock(::socket(static_cast<int>(k.family()), static_cast<int>(k.type()) | SOCK_CLOEXEC,
                         static_cast<int>(k.protocol())));
  if (!sock) fail_errno(errno, "{}: socket", what);
  const int s = sock.get();
  const bool established = connected(k);
  apply_options(s, k, what);
  // In repair mode a bind may share its port with a listener of the job (an accepted
  // connection's local address is the listener's). After the options: SO_REUSEADDR would
  // undo that (and leaving repair mode clears it: finish_inet_sockets sets it again).
  if (established) set_int(s, IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON, what, "TCP_REPAIR");
  if (!k.local().empty()) {
    socklen_t len = 0;
    sockaddr_storage local = to_sockaddr(k.local(), len);
    int rc = ::bind(s, reinterpret_cast<sockaddr*>(&local), len);
    if (rc < 0 && errno == EADDRNOTAVAIL && !k.options().freebind() && k.datagrams_size() > 0)
      fail("the job's socket bound to {} cannot work: that address is not in the restored network namespace "
           "(restored with another --ip?), and its {} queued datagram(s) cannot be put back",
           launcher::socket_address_text(k.local()), k.datagrams_size());
    if (rc < 0 && errno == EADDRNOTAVAIL && !k.options().freebind()) {
      // Addresses the job gave its own network namespace come back only after the fd table
      // (restore/net.cc): bind with IP_FREEBIND for the while; check_bound_addresses makes
      // sure they are there before the job runs.
      const bool v6 = k.family() == AF_INET6;
      const int level = v6 ? IPPROTO_IPV6 : IPPROTO_IP, name = v6 ? IPV6_FREEBIND : IP_FREEBIND;
      set_int(s, level, name, 1, what, "IP_FREEBIND");
      rc = ::bind(s, reinterpret_cast<sockaddr*>(&local), len);
      const int err = errno;
      set_int(s, level, name, 0, what, "IP_FREEBIND");
      errno = err;
    }
    if (rc < 0) {
      const int err = errno;
      fail_errno(err, "{}: bind to {}{}", what, launcher::socket_address_text(k.local()),
                 err == EADDRNOTAVAIL ? " (the address is not in the restored network namespace)"
                 : err == EADDRINUSE  ? " (another socket holds it: is the original still running?)"
                                      : "");
    }
  }
  if (tcp && k.state() == kListen) {
    if (::listen(s, static_cast<int>(k.backlog())) < 0) fail_errno(errno, "{}: listen", what);
  } else if (established) {
    restore_connection(s, k, what);
  } else if (!tcp && !k.peer().empty()) {
    socklen_t len = 0;
    sockaddr_storage peer = to_sockaddr(k.peer(), len);
    if (::connect(s, reinterpret_cast<sockaddr*>(&peer), len) < 0) fail_errno(errno, "{}: connect", what);
  }
  if (!tcp && k.datagrams_size() > 0) requeue_datagrams(s, k, what);
  if (::fcntl(s, F_SETFL, k.flags() & O_NONBLOCK) < 0) fail_errno(errno, "{}: set file flags", what);
  return sock;
}

UniqueFd open_netlink_socket(const pb::NetlinkSocket& n) {
  const std::string what = fmt::format("netlink socket of protocol {}", n.protocol());
  UniqueFd sock(::socket(AF_NETLINK, static_cast<int>(n.type()) | SOCK_CLOEXEC, static_cast<int>(n.protocol())));
  if (!sock) fail_errno(errno, "{}: socket", what);
  if (n.bound() || n.groups() != 0) {
    sockaddr_nl nl{};
    nl.nl_family = AF_NETLINK;
    nl.nl_pid = n.portid();
    nl.nl_groups = n.groups();
    if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&nl), sizeof nl) < 0) {
      // Its port id is taken in this namespace: the kernel picks another (programs ask
      // for theirs with getsockname, if at all).
      nl.nl_pid = 0;
      if (errno != EADDRINUSE || ::bind(sock.get(), reinterpret_cast<sockaddr*>(&nl), sizeof nl) < 0)
        fail_errno(errno, "{}: bind to port id {} groups {:#x}", what, n.portid(), n.groups());
    }
  }
  if (n.rcvbuf()) set_buffer(sock.get(), SO_RCVBUFFORCE, SO_RCVBUF, n.rcvbuf(), what, "SO_RCVBUF");
  if (n.sndbuf()) set_buffer(sock.get(), SO_SNDBUFFORCE, SO_SNDBUF, n.sndbuf(), what, "SO_SNDBUF");
  for (const auto& x : n.more_options())
    set_int(sock.get(), x.level(), x.name(), x.value(), what, fmt::format("{}/{}", x.level(), x.name()).c_str());
  for (uint32_t group : n.more_groups()) {
    const int g = static_cast<int>(group);
    if (::setsockopt(sock.get(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof g) < 0)
      fail_errno(errno, "{}: join group {}", what, group);
  }
  if (::fcntl(sock.get(), F_SETFL, n.flags() & O_NONBLOCK) < 0) fail_errno(errno, "{}: set file flags", what);
  return sock;
}

void finish_inet_sockets(const std::vector<pb::FdEntry>& fds, const FileImages& images) {
  std::set<uint64_t> done;
  for (const auto& e : fds) {
    if (e.kind() != pb::FdEntry::INET_SOCKET || !done.insert(e.file_id()).second) continue;
    auto it = images.inet_sockets.find(e.file_id());
    if (it == images.inet_sockets.end()) continue;
    const pb::InetSocket& k = it->second;
    if (!connected(k)) continue;
    const std::string what = fmt::format("fd {}: TCP {} -> {}", e.fd(), launcher::socket_address_text(k.local()), launcher::socket_address_text(k.peer()));
    // Out of repair mode without a window probe: the peer may be a socket of the job not
    // made yet (another process's), which would answer it with a reset. Unacknowledged data
    // goes again when its retransmission timer fires, as after any loss.
    set_int(e.fd(), IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP, what, "TCP_REPAIR off");
    if (k.options().reuseaddr()) set_int(e.fd(), SOL_SOCKET, SO_REUSEADDR, 1, what, "SO_REUSEADDR");
    if (k.shut_rd() && ::shutdown(e.fd(), SHUT_RD) < 0) fail_errno(errno, "{}: shutdown for reading", what);
    const auto& q = k.tcp().send_queue();
    const size_t unsent = std::min<size_t>(k.tcp().unsent(), q.size());
    if (unsent > 0) write_queue(e.fd(), q.data() + q.size() - unsent, unsent, what, "send");
    // A FIN that had not gone out yet goes after them.
    if (k.tcp().fin_queued() && !k.tcp().fin_sent() && ::shutdown(e.fd(), SHUT_WR) < 0)
      fail_errno(errno, "{}: shutdown for writing (its FIN, after the bytes never sent)", what);
  }
}

namespace {

// Lock table -> the connections it held: the established ones, and with connecting the
// sockets whose SYNs it held (which restore connects again, so its own lock leaves them out).
std::map<std::string, std::vector<launcher::LockedConnection>> locked_connections(const FileImages& images,
                                                                                  bool connecting) {
  std::map<std::string, std::vector<launcher::LockedConnection>> out;
  for (const auto& [id, k] : images.inet_sockets) {
    const std::string& table = connecting && k.tcp().lock_table().empty() ? k.lock_table() : k.tcp().lock_table();
    if (table.empty()) continue;
    out[table].push_back(launcher::locked_connection(k.local(), k.peer()));
  }
  return out;
}

}  // namespace

void resume_connection_attempts(const RestoreTree& tree, const std::map<pid_t, pid_t>& host_pids) {
  for_each_socket_copy(
      tree, host_pids, [](const pb::InetSocket& k) { return k.protocol() == IPPROTO_TCP && k.state() == kSynSent; },
      [](const pb::InetSocket& k, int s, const std::string& where) {
        const std::string what = fmt::format("{}: TCP {} connecting to {}", where, launcher::socket_address_text(k.local()),
                                             launcher::socket_address_text(k.peer()));
        // Without waiting (the flag is the job's too: its own goes back after).
        if (::fcntl(s, F_SETFL, O_NONBLOCK) < 0) fail_errno(errno, "{}: set O_NONBLOCK", what);
        socklen_t len = 0;
        sockaddr_storage peer = to_sockaddr(k.peer(), len);
        if (::connect(s, reinterpret_cast<sockaddr*>(&peer), len) < 0 && errno != EINPROGRESS)
          fail_errno(errno, "{}: connect again", what);
        if (::fcntl(s, F_SETFL, k.flags() & O_NONBLOCK) < 0) fail_errno(errno, "{}: set file flags", what);
        log::debug("{}: connecting again", what);
      });
}

void check_bound_addresses(const FileImages& images, pid_t pid) {
  std::vector<const pb::InetSocket*> bound;
  for (const auto& [id, k] : images.inet_sockets)
    if (!k.local().empty() && !k.options().freebind()) bound.push_back(&k);
  if (bound.empty()) return;
  run_in_namespaces(pid, {"net"}, [&] {
    for (const pb::InetSocket* k : bound) {
      socklen_t len = 0;
      sockaddr_storage local = to_sockaddr(k->local(), len);
      // The same address with port 0: only a missing address fails (EADDRNOTAVAIL).
      if (local.ss_family == AF_INET) reinterpret_cast<sockaddr_in&>(local).sin_port = 0;
      else reinterpret_cast<sockaddr_in6&>(local).sin6_port = 0;
      UniqueFd probe(::socket(local.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      if (probe && ::bind(probe.get(), reinterpret_cast<sockaddr*>(&local), len) < 0 && errno == EADDRNOTAVAIL)
        fail("the job's socket bound to {} cannot work: that address is not in the restored network namespace "
             "(restored with another --ip?)",
             launcher::socket_address_text(k->local()));
    }
  });
}

void lock_network(const FileImages& images, pid_t pid) {
  auto tables = locked_connections(images, false);
  if (tables.empty()) return;
  UniqueFd netns = proc::open_namespace(pid, "net");
  for (const auto& [table, connections] : tables) {
    launcher::lock_connections(table, true, connections, netns.get());
    log::debug("network lock {}: {} connection(s) held in the new network namespace", table, connections.size());
  }
}

void remove_network_lock(const FileImages& images, pid_t pid) {
  auto tables = locked_connections(images, true);
  if (tables.empty()) return;
  UniqueFd netns = proc::open_namespace(pid, "net");
  for (const auto& [table, connections] : tables) {
    launcher::remove_lock(table, netns.get());
    log::debug("removed the network lock {} ({} connection(s))", table, connections.size());
  }
}

}  // namespace stasis::restore
