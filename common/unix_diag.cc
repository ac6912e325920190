#include "common/unix_diag.h"

#include <dirent.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "common/ns_thread.h"

namespace stasis {

namespace {

template <typename T>
T attr_as(const char* data, size_t len) {
  T v{};
  std::memcpy(&v, data, std::min(sizeof v, len));
  return v;
}

UnixDiag parse(const unix_diag_msg* m, size_t len) {
  UnixDiag d;
  d.type = m->udiag_type;
  d.state = m->udiag_state;
  auto* a = reinterpret_cast<const nlattr*>(m + 1);
  size_t left = len;
  while (left >= sizeof(nlattr) && a->nla_len >= sizeof(nlattr) && a->nla_len <= left) {
    const char* data = reinterpret_cast<const char*>(a) + NLA_HDRLEN;
    const size_t size = a->nla_len - NLA_HDRLEN;
    switch (a->nla_type & NLA_TYPE_MASK) {
      case UNIX_DIAG_NAME:
        // A path is kept without the NUL the kernel stores after it (as recvmsg gives it).
        d.name = size > 0 && data[0] != '\0' ? std::string(data, strnlen(data, size)) : std::string(data, size);
        break;
      case UNIX_DIAG_VFS: {
        auto v = attr_as<unix_diag_vfs>(data, size);
        d.vfs_ino = v.udiag_vfs_ino;
        // The kernel's own dev_t (major << 20 | minor), made into stat's st_dev.
        d.vfs_dev = static_cast<uint32_t>(makedev(v.udiag_vfs_dev >> 20, v.udiag_vfs_dev & 0xfffff));
        break;
      }
      case UNIX_DIAG_PEER: d.peer = attr_as<uint32_t>(data, size); break;
      case UNIX_DIAG_ICONS:
        for (size_t k = 0; k + 4 <= size; k += 4) d.icons.push_back(attr_as<uint32_t>(data + k, 4));
        break;
      case UNIX_DIAG_RQLEN: {
        auto q = attr_as<unix_diag_rqlen>(data, size);
        d.rqueue = q.udiag_rqueue;
        d.wqueue = q.udiag_wqueue;
        break;
      }
      case UNIX_DIAG_SHUTDOWN: d.shutdown = attr_as<uint8_t>(data, size); break;
      default: break;
    }
    const size_t step = NLA_ALIGN(a->nla_len);
    if (step >= left) break;
    left -= step;
    a = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(a) + step);
  }
  return d;
}

}  // namespace

UniqueFd unix_diag_socket(pid_t pid) {
  UniqueFd sock;
  // A netlink socket belongs to the namespace it is made in: make it there, use it from here.
  run_in_namespaces(pid, {"net"}, [&] {
    sock.reset(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (!sock) fail_errno(errno, "pid {}: netlink sock_diag socket in its network namespace", pid);
  });
  return sock;
}

std::map<uint32_t, UnixDiag> unix_diag_query(int sock, uint32_t ino) {
  struct {
    nlmsghdr nlh;
    unix_diag_req req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | (ino == 0 ? NLM_F_DUMP : 0);
  msg.nlh.nlmsg_seq = 1;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0u;
  msg.req.udiag_ino = ino;
  msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0u;
  msg.req.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(sock, &msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
    fail_errno(errno, "sock_diag: ask for unix sockets");
  std::map<uint32_t, UnixDiag> out;
  std::vector<char> buf(64 * 1024);
  for (;;) {
    ssize_t n = ::recv(sock, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(errno, "sock_diag: read the unix sockets");
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, static_cast<unsigned>(n));
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) return out;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        if (err->error == 0) return out;
        fail_errno(-err->error, "sock_diag: unix socket {}", ino);
      }
      auto* m = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
      out[m->udiag_ino] = parse(m, h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
    }
    if (ino != 0) return out;  // a single answer, no NLMSG_DONE
  }
}

std::set<std::pair<uint32_t, uint32_t>> live_unix_socket_files() {
  std::set<std::pair<uint32_t, uint32_t>> live;
  std::set<ino_t> seen;
  DIR* proc = ::opendir("/proc");
  if (!proc) fail_errno(errno, "open /proc");
  std::vector<pid_t> pids;
  while (dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid > 0 && *end == '\0') pids.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(proc);
  for (pid_t pid : pids) {
    struct stat ns {};
    if (::stat(fmt::format("/proc/{}/ns/net", pid).c_str(), &ns) < 0 || !seen.insert(ns.st_ino).second) continue;
    try {
      UniqueFd sock = unix_diag_socket(pid);
      for (const auto& [ino, d] : unix_diag_query(sock.get()))
        if (d.vfs_ino != 0) live.insert({d.vfs_dev, d.vfs_ino});
    } catch (const Error&) {
      // A process gone meanwhile: its namespace, if it lives on, is another's too.
    }
  }
  return live;
}

}  // namespace stasis
