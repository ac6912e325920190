#include "dump/unix_sockets.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "common/log.h"
#include "common/unix_diag.h"
#include "common/proc.h"
#include "images/image_file.h"
#include "images/image_type.h"

namespace stasis::dump {

namespace {

constexpr uint8_t kEstablished = 1;  // TCP_ESTABLISHED: connected
constexpr uint8_t kListen = 10;      // TCP_LISTEN
constexpr uint32_t kRcvShutdown = 1, kSendShutdown = 2;

std::string type_name(uint32_t type) {
  switch (type) {
    case SOCK_STREAM: return "stream";
    case SOCK_DGRAM: return "datagram";
    case SOCK_SEQPACKET: return "seqpacket";
    default: return fmt::format("type {}", type);
  }
}

// A name for messages: a path as it is, an abstract name as "@name".
std::string printable(const std::string& name) {
  if (name.empty()) return "(unbound)";
  if (name[0] != '\0') return name;
  std::string out = "@";
  for (char c : name.substr(1)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

int get_int(int sock, int level, int opt, const char* name, uint32_t ino) {
  int v = 0;
  socklen_t len = sizeof v;
  if (::getsockopt(sock, level, opt, &v, &len) < 0) fail_errno(errno, "unix socket {}: getsockopt {}", ino, name);
  return v;
}

int64_t get_timeout_us(int sock, int opt, const char* name, uint32_t ino) {
  timeval tv{};
  socklen_t len = sizeof tv;
  if (::getsockopt(sock, SOL_SOCKET, opt, &tv, &len) < 0) fail_errno(errno, "unix socket {}: getsockopt {}", ino, name);
  return int64_t{tv.tv_sec} * 1000000 + tv.tv_usec;
}

// Refuses (through `refuse`) a peeked message that carries file descriptors, after closing
// the copies the peek installed in stasis.
template <typename Refuse>
void check_control(msghdr& m, Refuse& refuse) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t k = 0; k < count; ++k) {
      int passed;
      std::memcpy(&passed, CMSG_DATA(c) + k * sizeof(int), sizeof passed);
      ::close(passed);
    }
    refuse(fmt::format("{} file descriptor(s) in flight in its queue (SCM_RIGHTS) are not supported: dump it once "
                       "the program has received them",
                       count));
  }
  if (m.msg_flags & MSG_CTRUNC)
    refuse("its queue holds more ancillary data than can be read (file descriptors in flight?): not supported");
}

// The receive queue of sock, read in place. A stream queue usually comes whole with one
// MSG_PEEK from its head (stream_bytes: its length from sock_diag). Otherwise the peek offset
// (SO_PEEK_OFF, per socket, so the job's too) is set to 0 and every MSG_PEEK moves it past
// what it returned, record by record for datagram and seqpacket sockets; the job's own value
// is put back after (were stasis killed in between, the job would keep offset peeks on).
template <typename Refuse>
std::vector<pb::UnixMessage> peek_queue(int sock, uint32_t type, bool rcv_shutdown, uint32_t stream_bytes,
                                        uint32_t ino, Refuse&& refuse) {
  const int saved = get_int(sock, SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF", ino);
  std::vector<pb::UnixMessage> out;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253) + CMSG_SPACE(sizeof(ucred)) + 256];
  if (type == SOCK_STREAM && saved < 0 && stream_bytes > 0) {
    std::string all(stream_bytes, '\0');
    iovec iov{all.data(), all.size()};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(sock, &m, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno != EAGAIN) fail_errno(errno, "unix socket {}: peek its queue", ino);
    if (n > 0) check_control(m, refuse);
    if (n == static_cast<ssize_t>(stream_bytes)) {
      out.emplace_back().set_data(std::move(all));
      return out;
    }
    // Less: the peek stopped where the senders' credentials change; go on with offsets.
  }
  int zero = 0;
  if (::setsockopt(sock, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) < 0)
    fail_errno(errno, "unix socket {}: set SO_PEEK_OFF", ino);
  struct PutBack {
    int sock, value;
    ~PutBack() { ::setsockopt(sock, SOL_SOCKET, SO_PEEK_OFF, &value, sizeof value); }
  } put_back{sock, saved};

  std::string buf(type == SOCK_STREAM ? 256 * 1024 : 0, '\0');
  for (size_t round = 0;; ++round) {
    if (round > (1u << 22)) fail("unix socket {}: its queue does not end", ino);
    sockaddr_un from{};
    iovec iov{buf.data(), buf.size()};
    msghdr m{};
    m.msg_name = &from;
    m.msg_namelen = sizeof from;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    int flags = MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC;
    if (type != SOCK_STREAM) {
      // The record's length first (MSG_TRUNC, no room: the offset stays), then the record.
      iov = {nullptr, 0};
      ssize_t len = ::recvmsg(sock, &m, flags | MSG_TRUNC);
      if (len < 0 && errno == EAGAIN) break;
      if (len < 0) fail_errno(errno, "unix socket {}: peek the length of a queued record", ino);
      if (len == 0 && rcv_shutdown && m.msg_namelen == 0) break;  // shut for reading, queue empty
      buf.assign(static_cast<size_t>(len), '\0');
      iov = {buf.data(), buf.size()};
      m.msg_namelen = sizeof from;
      m.msg_controllen = sizeof control;
    }
    ssize_t n = ::recvmsg(sock, &m, flags);
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) fail_errno(errno, "unix socket {}: peek its queue", ino);
    check_control(m, refuse);
    if (type == SOCK_STREAM) {
      if (n == 0) break;  // end of file: shut for reading, nothing queued
      if (!out.empty() && out.back().data().size() < (1u << 20))
        out.back().mutable_data()->append(buf.data(), static_cast<size_t>(n));
      else
        out.emplace_back().set_data(buf.data(), static_cast<size_t>(n));
      continue;
    }
    pb::UnixMessage& msg = out.emplace_back();
    msg.set_data(buf.data(), static_cast<size_t>(n));
    if (type == SOCK_DGRAM && m.msg_namelen > offsetof(sockaddr_un, sun_path)) {
      size_t len = m.msg_namelen - offsetof(sockaddr_un, sun_path);
      std::string name(from.sun_path, len);
      if (name[0] != '\0') name = name.c_str();  // a path ends at its NUL
      msg.set_sender(name);
    }
  }
  return out;
}

}  // namespace

UnixSocketCollector::~UnixSocketCollector() = default;

bool UnixSocketCollector::is_unix(int copy) {
  int domain = 0;
  socklen_t len = sizeof domain;
  return ::getsockopt(copy, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX;
}

UnixSocketCollector::Netns& UnixSocketCollector::netns_of(pid_t pid, uint64_t* key) {
  struct stat ns {};
  const std::string path = fmt::format("/proc/{}/ns/net", pid);
  if (::stat(path.c_str(), &ns) < 0) fail_errno(errno, "pid {}: stat {}", pid, path);
  *key = ns.st_ino;
  auto found = netns_.find(ns.st_ino);
  if (found != netns_.end()) return found->second;
  Netns table;
  table.diag = unix_diag_socket(pid);
  table.by_ino = unix_diag_query(table.diag.get());
  log::debug("pid {}: {} unix socket(s) in its network namespace", pid, table.by_ino.size());
  return netns_.emplace(ns.st_ino, std::move(table)).first->second;
}

std::string UnixSocketCollector::what(uint32_t ino) const {
  const auto& s = sockets_.at(ino);
  const auto& h = held_.at(ino);
  std::string name = s.name().empty() ? "" : " " + printable(s.name());
  return fmt::format("pid {} fd {}: unix {} socket{}", h.pid, h.fd, type_name(s.type()), name);
}

void UnixSocketCollector::refuse(uint32_t ino, const std::string& why) const {
  throw UnsupportedError(fmt::format("{}: {}", what(ino), why));
}

void UnixSocketCollector::describe(pid_t pid, int fd, UniqueFd copy, uint32_t flags, uint64_t id) {
  struct stat st {};
  if (::fstat(copy.get(), &st) < 0) fail_errno(errno, "pid {} fd {}: fstat the socket", pid, fd);
  const auto ino = static_cast<uint32_t>(st.st_ino);
  uint64_t netns_key = 0;
  Netns& netns = netns_of(pid, &netns_key);
  auto found = netns.by_ino.find(ino);
  if (found == netns.by_ino.end())
    fail("pid {} fd {}: unix socket {} is not in the sock_diag list of its network namespace", pid, fd, ino);
  const Diag& d = found->second;

  pb::UnixSocket s;
  s.set_id(id);
  s.set_ino(ino);
  s.set_type(d.type);
  s.set_state(d.state);
  s.set_flags(flags & O_NONBLOCK);
  s.set_name(d.name);
  s.set_peer_ino(d.peer);
  s.set_shutdown(d.shutdown);
  if (d.state == kListen) {
    s.set_backlog(d.wqueue);  // sock_diag gives a listener's backlog as its "write queue"
    for (uint32_t client : d.icons) s.add_pending(client);
  }
  held_[ino] = Held{pid, fd, netns_key, UniqueFd(), {}};
  if (d.peer != 0) {
    sockaddr_un peer{};
    socklen_t len = sizeof peer;
    if (::getpeername(copy.get(), reinterpret_cast<sockaddr*>(&peer), &len) == 0 &&
        len > offsetof(sockaddr_un, sun_path)) {
      std::string name(peer.sun_path, len - offsetof(sockaddr_un, sun_path));
      held_[ino].peer_name = name[0] != '\0' ? std::string(name.c_str()) : name;
    }
  }
  sockets_[ino] = s;  // for messages from here on

  const int sock = copy.get();
  s.set_passcred(get_int(sock, SOL_SOCKET, SO_PASSCRED, "SO_PASSCRED", ino) != 0);
  s.set_passsec(get_int(sock, SOL_SOCKET, SO_PASSSEC, "SO_PASSSEC", ino) != 0);
  s.set_rcvbuf(static_cast<uint32_t>(get_int(sock, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", ino)));
  s.set_sndbuf(static_cast<uint32_t>(get_int(sock, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", ino)));
  s.set_rcvtimeo_us(get_timeout_us(sock, SO_RCVTIMEO, "SO_RCVTIMEO", ino));
  s.set_sndtimeo_us(get_timeout_us(sock, SO_SNDTIMEO, "SO_SNDTIMEO", ino));
  s.set_peek_off(get_int(sock, SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF", ino));
  ucred cred{};
  socklen_t cred_len = sizeof cred;
  if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) == 0 && cred.pid != 0) {
    s.set_has_peer_cred(true);
    s.set_peer_uid(cred.uid);
    s.set_peer_gid(cred.gid);
  }

  // The socket file of a name that is a path, seen from the job's root.
  if (!d.name.empty() && d.name[0] != '\0') {
    std::string path = d.name;
    if (path[0] != '/') {
      // A relative name was bound in the working directory of that time; only the current
      // one can be checked.
      std::string cwd = proc::read_link(fmt::format("/proc/{}/cwd", pid));
      // Seen from the job's root (a container with its own root file system).
      const std::string root = proc::read_link(fmt::format("/proc/{}/root", pid));
      if (root != "/" && cwd.compare(0, root.size(), root) == 0 &&
          (cwd.size() == root.size() || cwd[root.size()] == '/'))
        cwd = cwd.size() == root.size() ? "/" : cwd.substr(root.size());
      s.set_bind_dir(cwd);
      path = cwd + "/" + path;
    }
    struct stat file {};
    const std::string seen = fmt::format("/proc/{}/root{}", pid, path);
    if (::lstat(seen.c_str(), &file) == 0 && S_ISSOCK(file.st_mode) && file.st_ino == d.vfs_ino) {
      s.set_file_mode(file.st_mode & 07777);
      s.set_file_uid(file.st_uid);
      s.set_file_gid(file.st_gid);
    } else if (path != d.name) {
      refuse(ino, fmt::format("its relative name was bound in another directory than its working directory {}: "
                              "not supported (bind it to an absolute path)",
                              s.bind_dir()));
    } else {
      s.set_name_deleted(true);  // removed or replaced since the bind
    }
  }

  // A stream or seqpacket socket has a queue only once connected (recv says EINVAL before).
  if (d.type == SOCK_DGRAM || d.state == kEstablished) {
    auto queue = peek_queue(sock, d.type, d.shutdown & kRcvShutdown, d.rqueue, ino, [&](const std::string& why) { refuse(ino, why); });
    uint64_t bytes = 0;
    for (auto& m : queue) {
      bytes += m.data().size();
      *s.add_queue() = std::move(m);
    }
    if (d.type != SOCK_DGRAM && bytes != d.rqueue)
      refuse(ino, fmt::format("{} bytes of its queue could be read in place of the {} queued (out-of-band data?): "
                              "not supported",
                              bytes, d.rqueue));
    log::debug("pid {} fd {}: unix {} socket {}: {} message(s), {} byte(s) queued", pid, fd, type_name(d.type), ino,
               s.queue_size(), bytes);
  }
  // A listener whose pending connections carry data: they are read in write_images.
  if (d.state == kListen && !d.icons.empty()) held_[ino].copy = std::move(copy);
  sockets_[ino] = std::move(s);
}

void UnixSocketCollector::check_peers() {
  // Listening sockets of the job by name (a connected socket whose name is a listener's was
  // made by accept() on it).
  std::map<std::string, uint32_t> listeners;
  std::map<uint32_t, uint32_t> pending_on;  // connecting socket -> listener
  for (const auto& [ino, s] : sockets_) {
    if (s.state() != kListen) continue;
    listeners[s.name()] = ino;
    for (uint32_t client : s.pending()) {
      if (!sockets_.count(client))
        refuse(ino, fmt::format("a connection from a socket outside the job (inode {}) waits in its accept queue: "
                                "not supported (dump it once the program has accepted it, with the client)",
                                client));
      pending_on[client] = ino;
    }
  }
  for (auto& [ino, s] : sockets_) {
    if (s.state() == kListen) continue;
    const Netns& netns = netns_.at(held_.at(ino).netns);
    if (s.peer_ino() != 0 && !sockets_.count(s.peer_ino())) {
      auto peer = netns.by_ino.find(s.peer_ino());
      // Its peer's name as getpeername() gives it (the listener it connected to), else the
      // peer's own in this namespace.
      std::string where = !held_.at(ino).peer_name.empty() ? printable(held_.at(ino).peer_name)
                          : peer == netns.by_ino.end()     ? fmt::format("socket {}", s.peer_ino())
                          : peer->second.name.empty()      ? fmt::format("unbound socket {}", s.peer_ino())
                                                           : printable(peer->second.name);
      refuse(ino, fmt::format("connected to {}, which is outside the job: not supported (a connection to outside "
                              "cannot be restored; dump the program at the other end with it, or dump when the "
                              "connection is closed)",
                              where));
    }
    // (A datagram socket shows "connected" without a peer when another one connected to it,
    // or when the one it connected to was closed since: it comes back unconnected, so sends
    // without an address fail with ENOTCONN rather than ECONNREFUSED.)
    if (s.state() == kEstablished && s.peer_ino() == 0 && !pending_on.count(ino) && s.type() != SOCK_DGRAM) {
      if ((s.shutdown() & (kRcvShutdown | kSendShutdown)) == (kRcvShutdown | kSendShutdown))
        s.set_peer_closed(true);
      else
        refuse(ino, "its connection waits in the accept queue of a listening socket outside the job: not supported "
                    "(a connection to outside cannot be restored)");
    }
    // Made by accept(): it carries its listener's name.
    if (s.state() == kEstablished && s.type() != SOCK_DGRAM && !s.name().empty()) {
      auto listener = listeners.find(s.name());
      if (listener != listeners.end() && listener->second != ino) {
        const auto& l = sockets_.at(listener->second);
        const auto& ld = netns.by_ino.at(listener->second);
        const auto& sd = netns.by_ino.at(ino);
        if (l.name()[0] == '\0' || ld.vfs_ino == sd.vfs_ino) s.set_accepted_from(listener->second);
      }
    }
    // Queued datagrams come back from the socket that sent them: it must be the job's.
    if (s.type() == SOCK_DGRAM) {
      for (const auto& m : s.queue()) {
        if (m.sender().empty()) continue;
        bool found = false;
        for (const auto& [other, o] : sockets_) found = found || (o.type() == SOCK_DGRAM && o.name() == m.sender());
        if (!found)
          refuse(ino, fmt::format("a datagram from {}, a socket outside the job, waits in its queue: not supported "
                                  "(dump it once the program has read it)",
                                  printable(m.sender())));
      }
    }
    if (pending_on.count(ino)) {
      const proc::Status status = proc::read_status(held_.at(ino).pid);
      s.set_has_connect_cred(true);
      s.set_connect_uid(status.uid[1]);
      s.set_connect_gid(status.gid[1]);
    }
    // A connection not accepted yet whose client has sent data: that data waits on the side
    // no fd holds, which only accept() reaches.
    if (pending_on.count(ino) && netns.by_ino.at(ino).wqueue > 0 && leave_running_)
      refuse(ino, fmt::format("its connection waits, with data it sent, in the accept queue of {}; with "
                              "--leave-running that data cannot be read without taking the connection from the "
                              "program: dump without --leave-running, or once the program has accepted it",
                              what(pending_on.at(ino))));
  }
}

void UnixSocketCollector::write_images(const std::filesystem::path& dir) {
  // The data a client sent on a connection still in an accept queue sits on the server side,
  // which has no fd until accept(). The job is killed after this dump (--leave-running was
  // refused above), so its listener's pending connections are accepted here, as late as
  // possible, and read; they go back into the accept queue at restore, with their data.
  for (auto& [ino, held] : held_) {
    if (!held.copy) continue;
    auto& listener = sockets_.at(ino);
    bool any_data = false;
    for (uint32_t client : listener.pending())
      any_data = any_data || netns_.at(held.netns).by_ino.at(client).wqueue > 0;
    if (!any_data) continue;
    for (;;) {
      // The listener's file is the job's: its O_NONBLOCK is not ours to change, so poll.
      pollfd ready{held.copy.get(), POLLIN, 0};
      if (::poll(&ready, 1, 0) <= 0) break;
      UniqueFd conn(::accept4(held.copy.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!conn && errno == EAGAIN) break;
      if (!conn) fail_errno(errno, "{}: accept its pending connections", what(ino));
      struct stat st {};
      if (::fstat(conn.get(), &st) < 0) fail_errno(errno, "{}: fstat an accepted connection", what(ino));
      auto answer = unix_diag_query(netns_.at(held.netns).diag.get(), static_cast<uint32_t>(st.st_ino));
      const uint32_t client = answer.empty() ? 0 : answer.begin()->second.peer;
      auto it = sockets_.find(client);
      if (it == sockets_.end()) fail("{}: a pending connection came from socket {}, not seen before", what(ino), client);
      auto queue = peek_queue(conn.get(), listener.type(), false, 0, ino, [&](const std::string& why) { refuse(client, why); });
      for (auto& m : queue) *it->second.add_pending_sent() = std::move(m);
      log::debug("{}: {} message(s) sent on its pending connection", what(client), it->second.pending_sent_size());
    }
  }
  images::ImageWriter w(dir / images::image_file_name(images::ImageType::UnixSockets), images::ImageType::UnixSockets);
  for (const auto& [ino, s] : sockets_) w.write(s);
  w.close();
}

}  // namespace stasis::dump
