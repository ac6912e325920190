#include "restore/unix_sockets.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"

namespace stasis::restore {

namespace {

constexpr uint32_t kEstablished = 1, kListen = 10;
constexpr int kRestoreBacklog = 4096;  // while connections are made again; the job's after

std::string printable(const std::string& name) {
  if (name.empty()) return "(unbound)";
  if (name[0] != '\0') return name;
  std::string out = "@";
  for (char c : name.substr(1)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

std::string what(const pb::UnixSocket& s) {
  return fmt::format("unix socket {} (inode {})", printable(s.name()), s.ino());
}

struct Address {
  sockaddr_un addr{};
  socklen_t len = 0;
};

Address address_of(const std::string& name, const pb::UnixSocket& s) {
  Address a;
  a.addr.sun_family = AF_UNIX;
  if (name.size() > sizeof a.addr.sun_path - (name[0] == '\0' ? 0 : 1)) fail("{}: name too long", what(s));
  std::memcpy(a.addr.sun_path, name.data(), name.size());
  a.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + (name[0] == '\0' ? 0 : 1));
  return a;
}

void set_int(int fd, int opt, int value, const char* name, const pb::UnixSocket& s) {
  if (setsockopt(fd, SOL_SOCKET, opt, &value, sizeof value) < 0) fail_errno(errno, "{}: set {}", what(s), name);
}

void set_timeout(int fd, int opt, int64_t us, const char* name, const pb::UnixSocket& s) {
  timeval tv{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
  if (setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv) < 0) fail_errno(errno, "{}: set {}", what(s), name);
}

// Buffer sizes before any data goes in (the queues are charged to the sender's send buffer).
// getsockopt reports twice what was set; SO_*BUFFORCE passes over net.core.[rw]mem_max.
void set_buffers(int fd, const pb::UnixSocket& s) {
  auto set = [&](int opt, int force, uint32_t want, const char* name) {
    int now = 0;
    socklen_t len = sizeof now;
    if (want == 0 || (getsockopt(fd, SOL_SOCKET, opt, &now, &len) == 0 && static_cast<uint32_t>(now) == want)) return;
    int half = static_cast<int>(want / 2);
    if (setsockopt(fd, SOL_SOCKET, force, &half, sizeof half) < 0) set_int(fd, opt, half, name, s);
  };
  set(SO_SNDBUF, SO_SNDBUFFORCE, s.sndbuf(), "SO_SNDBUF");
  set(SO_RCVBUF, SO_RCVBUFFORCE, s.rcvbuf(), "SO_RCVBUF");
}

void send_all(int from, const pb::UnixMessage& m, const Address* to, const pb::UnixSocket& s) {
  const std::string& data = m.data();
  size_t done = 0;
  do {
    ssize_t n = to ? sendto(from, data.data() + done, data.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT,
                            reinterpret_cast<const sockaddr*>(&to->addr), to->len)
                   : send(from, data.data() + done, data.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      fail_errno(errno, "{}: put back {} queued byte(s) (the peer's send buffer or the receiver's queue limit, "
                 "net.unix.max_dgram_qlen, may be lower here)",
                 what(s), data.size());
    done += static_cast<size_t>(n);
  } while (done < data.size() && s.type() == SOCK_STREAM);
}

// A relative name means something in the directory it was bound in: the stub works there
// while it binds, connects or sends to it, and goes back after.
class InBindDir {
 public:
  explicit InBindDir(const pb::UnixSocket& s) {
    if (s.bind_dir().empty()) return;
    cwd_.reset(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!cwd_ || chdir(s.bind_dir().c_str()) < 0) fail_errno(errno, "{}: enter {}", what(s), s.bind_dir());
  }
  ~InBindDir() {
    if (cwd_ && fchdir(cwd_.get()) < 0) {
    }
  }
  InBindDir(const InBindDir&) = delete;
  InBindDir& operator=(const InBindDir&) = delete;

 private:
  UniqueFd cwd_;
};

// The kernel gives a connection's ends the credentials of who made it (SO_PEERCRED): socketpair,
// listen and connect run with the effective ids the dumped peer had, and root's after.
class AsPeer {
 public:
  explicit AsPeer(const pb::UnixSocket& s) : AsPeer(s, s.has_peer_cred(), s.peer_uid(), s.peer_gid()) {}
  AsPeer(const pb::UnixSocket& s, bool has, uint32_t uid, uint32_t gid) {
    if (!has || (uid == geteuid() && gid == getegid())) return;
    uid_ = geteuid();
    gid_ = getegid();
    if (syscall(SYS_setresgid, -1, gid, -1) < 0 || syscall(SYS_setresuid, -1, uid, -1) < 0)
      fail_errno(errno, "{}: take its peer's ids {}:{}", what(s), uid, gid);
    changed_ = true;
  }
  ~AsPeer() {
    if (!changed_) return;
    if (syscall(SYS_setresuid, -1, uid_, -1) < 0 || syscall(SYS_setresgid, -1, gid_, -1) < 0) std::abort();
  }
  AsPeer(const AsPeer&) = delete;
  AsPeer& operator=(const AsPeer&) = delete;

 private:
  bool changed_ = false;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

void connect_to(int fd, const pb::UnixSocket& from, const pb::UnixSocket& to) {
  InBindDir in_dir(to);
  const Address a = address_of(to.name(), to);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&a.addr), a.len) < 0)
    fail_errno(errno, "{}: connect to {}", what(from), printable(to.name()));
}

// Binds a path again where it was: a socket file left by the dumped job (no socket is bound
// to it any more: sock_diag of every network namespace, asked by the restorer before the
// start, since a connect() to find out would put a connection in the original's queue) is
// replaced; the new file gets the old one's mode and owner.
void bind_name(int fd, const pb::UnixSocket& s, const std::set<std::pair<uint32_t, uint32_t>>& live) {
  const std::string& name = s.name();
  InBindDir in_dir(s);
  const Address a = address_of(name, s);
  if (name[0] != '\0') {
    struct stat st {};
    if (lstat(name.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) fail("{}: {} exists and is not a socket", what(s), name);
      if (live.count({static_cast<uint32_t>(st.st_dev), static_cast<uint32_t>(st.st_ino)}))
        fail("{}: another socket is bound to {} (the original, dumped with --leave-running and still running?): "
             "stop the program that holds it",
             what(s), name);
      if (unlink(name.c_str()) < 0) fail_errno(errno, "{}: remove the old socket file {}", what(s), name);
    }
  }
  if (bind(fd, reinterpret_cast<const sockaddr*>(&a.addr), a.len) < 0) {
    if (errno == EADDRINUSE)
      fail("{}: another socket has this name here (the original, dumped with --leave-running and still "
           "running in this network namespace?): stop the program that holds it",
           what(s));
    fail_errno(errno, "{}: bind", what(s));
  }
  if (name[0] == '\0') return;
  if (s.name_deleted()) {
    if (unlink(name.c_str()) < 0) fail_errno(errno, "{}: remove its name again", what(s));
    return;
  }
  if (lchown(name.c_str(), s.file_uid(), s.file_gid()) < 0 || chmod(name.c_str(), s.file_mode()) < 0)
    fail_errno(errno, "{}: set its file's owner {}:{} and mode {:o}", what(s), s.file_uid(), s.file_gid(), s.file_mode());
}

}  // namespace

int UnixSocketFactory::fd_of(uint32_t ino) const {
  auto it = sockets_.find(ino);
  if (it == sockets_.end()) fail("unix socket {} was not made", ino);
  return it->second.get();
}

void UnixSocketFactory::keep(uint32_t ino, int fd) {
  UniqueFd own(fd);
  UniqueFd high(fcntl(fd, F_DUPFD_CLOEXEC, min_fd_));
  if (!high) fail_errno(errno, "unix socket {}: move above fd {}", ino, min_fd_);
  sockets_[ino] = std::move(high);
}

void UnixSocketFactory::build() {
  const auto& all = images_.unix_sockets;
  auto find = [&](uint32_t ino) -> const pb::UnixSocket* {
    auto it = all.find(ino);
    return it == all.end() ? nullptr : &it->second;
  };
  std::map<uint32_t, uint32_t> pending_on;  // connecting socket -> listener
  for (const auto& [ino, s] : all)
    for (uint32_t client : s.pending()) pending_on[client] = ino;
  std::map<uint32_t, uint32_t> paired;       // made by socketpair with this one
  std::map<uint32_t, UniqueFd> closed_peers;  // the other end of a peer_closed socket

  // 1. Every socket but those accept() makes: pairs without a listener by socketpair.
  for (const auto& [ino, s] : all) {
    if (sockets_.count(ino) || s.accepted_from() != 0) continue;
    const pb::UnixSocket* peer = find(s.peer_ino());
    const bool connected = s.state() == kEstablished && !pending_on.count(ino);
    bool pair = false;
    if (connected && s.peer_closed()) pair = true;
    else if (connected && peer && peer->peer_ino() == ino && peer->accepted_from() == 0 && !sockets_.count(peer->ino()))
      pair = true;
    if (pair) {
      int fds[2];
      AsPeer as_peer(s);
      if (socketpair(AF_UNIX, static_cast<int>(s.type()) | SOCK_CLOEXEC, 0, fds) < 0)
        fail_errno(errno, "{}: socketpair", what(s));
      keep(ino, fds[0]);
      if (s.peer_closed()) {
        closed_peers[ino] = UniqueFd(fds[1]);
      } else {
        keep(peer->ino(), fds[1]);
        paired[ino] = peer->ino();
        paired[peer->ino()] = ino;
      }
      continue;
    }
    int fd = socket(AF_UNIX, static_cast<int>(s.type()) | SOCK_CLOEXEC, 0);
    if (fd < 0) fail_errno(errno, "{}: socket", what(s));
    keep(ino, fd);
  }
  for (const auto& [ino, fd] : sockets_) set_buffers(fd.get(), all.at(ino));

  // 2. Names (an accepted connection has its listener's: nothing to bind), then listeners,
  // with room in their queues for the connections made again below.
  for (const auto& [ino, s] : all)
    if (!s.name().empty() && s.accepted_from() == 0) bind_name(fd_of(ino), s, images_.live_unix_files);
  for (const auto& [ino, s] : all) {
    if (s.state() != kListen) continue;
    AsPeer as_peer(s);  // what its clients see as their peer's
    if (listen(fd_of(ino), kRestoreBacklog) < 0) fail_errno(errno, "{}: listen", what(s));
  }

  // 3. Datagrams, before datagram sockets connect (a connected one takes its peer's only):
  // each from the socket bound to its sender's name, else from the receiver's peer, else
  // from an unbound socket of ours.
  for (const auto& [ino, s] : all) {
    if (s.type() != SOCK_DGRAM || s.queue_size() == 0) continue;
    for (const auto& m : s.queue()) {
      int from = -1;
      UniqueFd temporary;
      if (!m.sender().empty()) {
        for (const auto& [other, o] : all)
          if (o.type() == SOCK_DGRAM && o.name() == m.sender()) from = fd_of(other);
        if (from < 0) fail("{}: no socket of the job is bound to {}, the sender of a queued datagram", what(s),
                           printable(m.sender()));
      } else if (s.peer_ino() != 0 && find(s.peer_ino())) {
        from = fd_of(s.peer_ino());
      } else {
        temporary.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (!temporary) fail_errno(errno, "{}: socket to send its queued datagrams", what(s));
        from = temporary.get();
      }
      if (s.name().empty()) {
        auto p = paired.find(ino);
        if (p == paired.end() || fd_of(p->second) != from)
          fail("{}: a queued datagram has no sender that can reach this unbound socket", what(s));
        send_all(from, m, nullptr, s);
      } else {
        InBindDir in_dir(s);
        const Address to = address_of(s.name(), s);
        send_all(from, m, &to, s);
      }
    }
  }

  // 4. Connections: datagram sockets to their peer's name; accepted stream and seqpacket
  // connections through their listener (connect, then accept at once, so the accepted one is
  // this connection); then the connections that wait in accept queues, in queue order.
  for (const auto& [ino, s] : all) {
    if (s.type() != SOCK_DGRAM || s.peer_ino() == 0 || paired.count(ino)) continue;
    const pb::UnixSocket* peer = find(s.peer_ino());
    if (!peer || peer->name().empty()) fail("{}: connected to a socket without a name that is not its pair", what(s));
    connect_to(fd_of(ino), s, *peer);
  }
  for (const auto& [ino, s] : all) {
    if (s.accepted_from() == 0) continue;
    const pb::UnixSocket* listener = find(s.accepted_from());
    const pb::UnixSocket* client = find(s.peer_ino());
    if (!listener || !client) fail("{}: its listening socket or its peer is not in the image", what(s));
    {
      AsPeer as_peer(s);  // what the accepted end sees as its peer's
      connect_to(fd_of(client->ino()), *client, *listener);
    }
    int accepted = accept4(fd_of(listener->ino()), nullptr, nullptr, SOCK_CLOEXEC);
    if (accepted < 0) fail_errno(errno, "{}: accept the connection of {}", what(*listener), what(*client));
    keep(ino, accepted);
    set_buffers(fd_of(ino), s);
  }
  for (const auto& [ino, s] : all) {
    for (uint32_t client_ino : s.pending()) {
      const pb::UnixSocket* client = find(client_ino);
      if (!client) fail("{}: its pending connection from socket {} is not in the image", what(s), client_ino);
      {
        AsPeer as_client(*client, client->has_connect_cred(), client->connect_uid(), client->connect_gid());
        connect_to(fd_of(client_ino), *client, s);
      }
      for (const auto& m : client->pending_sent()) send_all(fd_of(client_ino), m, nullptr, *client);
    }
  }

  // 5. Stream and seqpacket queues, sent by the peer end (records one by one); a peer the job
  // had closed is closed now, after its data.
  for (const auto& [ino, s] : all) {
    if (s.type() == SOCK_DGRAM || s.state() == kListen) continue;
    auto closed = closed_peers.find(ino);
    int from = closed != closed_peers.end() ? closed->second.get() : (s.queue_size() ? fd_of(s.peer_ino()) : -1);
    for (const auto& m : s.queue()) send_all(from, m, nullptr, s);
  }
  closed_peers.clear();

  // 6. Shutdown state, options, the job's backlog, file flags.
  for (const auto& [ino, s] : all) {
    const int fd = fd_of(ino);
    if (s.shutdown() != 0 && !s.peer_closed() && s.state() != kListen && shutdown(fd, static_cast<int>(s.shutdown()) - 1) < 0)
      fail_errno(errno, "{}: shutdown {}", what(s), s.shutdown() - 1);
    if (s.passcred()) set_int(fd, SO_PASSCRED, 1, "SO_PASSCRED", s);
    if (s.passsec()) set_int(fd, SO_PASSSEC, 1, "SO_PASSSEC", s);
    if (s.rcvtimeo_us()) set_timeout(fd, SO_RCVTIMEO, s.rcvtimeo_us(), "SO_RCVTIMEO", s);
    if (s.sndtimeo_us()) set_timeout(fd, SO_SNDTIMEO, s.sndtimeo_us(), "SO_SNDTIMEO", s);
    if (s.peek_off() >= 0) set_int(fd, SO_PEEK_OFF, s.peek_off(), "SO_PEEK_OFF", s);
    if (s.state() == kListen && listen(fd, static_cast<int>(s.backlog())) < 0)
      fail_errno(errno, "{}: listen with backlog {}", what(s), s.backlog());
    if (fcntl(fd, F_SETFL, s.flags() & O_NONBLOCK) < 0) fail_errno(errno, "{}: set its file flags", what(s));
  }
}

UniqueFd UnixSocketFactory::open(uint64_t id) {
  if (!built_) {
    built_ = true;
    build();
  }
  for (const auto& [ino, s] : images_.unix_sockets) {
    if (s.id() != id) continue;
    UniqueFd fd(fcntl(fd_of(ino), F_DUPFD_CLOEXEC, 0));
    if (!fd) fail_errno(errno, "{}: dup", what(s));
    return fd;
  }
  fail("unix-sockets.img has no socket {}", id);
}

}  // namespace stasis::restore
