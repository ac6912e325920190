#include "dump/namespaces.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string_view>

#include "common/error.h"
#include "common/file_util.h"

namespace stasis::dump {

namespace {

const char* const kKinds[] = {"pid", "mnt", "net", "uts", "ipc", "cgroup", "time", "user"};

}  // namespace

void read_uts(pid_t pid, std::string& hostname, std::string& domainname) {
  std::string ns_path = fmt::format("/proc/{}/ns/uts", pid);
  UniqueFd ns = open_or_throw(ns_path, O_RDONLY);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) fail_errno(errno, "pipe2");
  UniqueFd r(p[0]), w(p[1]);
  pid_t child = ::fork();
  if (child < 0) fail_errno(errno, "fork to read the UTS namespace of pid {}", pid);
  if (child == 0) {
    // Only async-signal-safe calls here.
    struct utsname u;
    if (::setns(ns.get(), CLONE_NEWUTS) < 0 || ::uname(&u) < 0) ::_exit(1);
    char buf[sizeof u.nodename + sizeof u.domainname];
    std::memcpy(buf, u.nodename, sizeof u.nodename);
    std::memcpy(buf + sizeof u.nodename, u.domainname, sizeof u.domainname);
    ssize_t n = ::write(w.get(), buf, sizeof buf);
    ::_exit(n == static_cast<ssize_t>(sizeof buf) ? 0 : 1);
  }
  w.reset();
  struct utsname u;
  char buf[sizeof u.nodename + sizeof u.domainname];
  ssize_t got = 0;
  while (got < static_cast<ssize_t>(sizeof buf)) {
    ssize_t n = ::read(r.get(), buf + got, sizeof buf - static_cast<size_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += n;
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (got != static_cast<ssize_t>(sizeof buf) || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail("pid {}: could not read hostname in its UTS namespace {} (setns or uname failed)", pid, ns_path);
  hostname.assign(buf, strnlen(buf, sizeof u.nodename));
  domainname.assign(buf + sizeof u.nodename, strnlen(buf + sizeof u.nodename, sizeof u.domainname));
}

pb::NamespaceState collect_namespaces(pid_t pid) {
  pb::NamespaceState state;
  for (const char* kind : kKinds) {
    std::string path = fmt::format("/proc/{}/ns/{}", pid, kind);
    struct stat st {}, host {};
    if (::stat(path.c_str(), &st) < 0) {
      if (errno == ENOENT) continue;  // a kind this kernel lacks
      fail_errno(errno, "stat {}", path);
    }
    // The host's namespaces are PID 1's; where we may not look at PID 1 (a sandbox), ours.
    std::string host_path = fmt::format("/proc/1/ns/{}", kind);
    if (::stat(host_path.c_str(), &host) < 0) {
      host_path = fmt::format("/proc/self/ns/{}", kind);
      if (::stat(host_path.c_str(), &host) < 0) fail_errno(errno, "stat {}", host_path);
    }
    auto* e = state.add_namespaces();
    e->set_kind(kind);
    e->set_inode(st.st_ino);
    e->set_own(st.st_ino != host.st_ino || st.st_dev != host.st_dev);
    e->set_external(!e->own());
    // A namespace shared with the host is the restoring host's at restore (the launcher leaves
    // the job in it), but for the PID namespace: the restored job gets its own, under our init,
    // where its PIDs collide with nothing; and the cgroup one, made anew at the job's cgroup.
    const std::string_view k = kind;
    e->set_rejoin(e->external() && k != "pid" && k != "cgroup");
  }
  std::string hostname, domainname;
  read_uts(pid, hostname, domainname);
  state.set_hostname(hostname);
  state.set_domainname(domainname);
  return state;
}

}  // namespace stasis::dump
