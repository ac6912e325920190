#include "dump/event_files.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <vector>

#include "common/compat.h"
#include "common/error.h"
#include "common/fd.h"
#include "common/file_util.h"
#include "common/proc.h"
#include "common/timespec.h"

namespace stasis::dump {

namespace {

const std::string* field(const std::vector<std::pair<std::string, std::string>>& fdinfo, const char* key) {
  for (const auto& [k, v] : fdinfo)
    if (k == key) return &v;
  return nullptr;
}

const std::string& require(const std::vector<std::pair<std::string, std::string>>& fdinfo, const char* key,
                           const std::string& where) {
  const std::string* v = field(fdinfo, key);
  if (!v) fail("{}: fdinfo has no '{}' line", where, key);
  return *v;
}

uint64_t number(const std::string& text, int base, const std::string& where) {
  char* end = nullptr;
  const uint64_t n = std::strtoull(text.c_str(), &end, base);
  if (text.empty() || end == text.c_str()) fail("{}: cannot read a number in '{}'", where, text);
  return n;
}

// "(12, 345678)": seconds and nanoseconds.
uint64_t duration_ns(const std::string& text, const std::string& where) {
  unsigned long long sec = 0, nsec = 0;
  if (std::sscanf(text.c_str(), "(%llu, %llu)", &sec, &nsec) != 2) fail("{}: cannot read the time '{}'", where, text);
  return sec * 1000000000ull + nsec;
}

// A mount of the filesystem with kernel device number sdev (MAJOR << 20 | MINOR), opened
// for open_by_handle_at (which refuses O_PATH fds).
UniqueFd open_mount_of(uint32_t sdev, const std::string& where) {
  const std::string want = fmt::format("{}:{}", sdev >> 20, sdev & 0xfffff);
  std::istringstream in(read_file("/proc/self/mountinfo"));
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    if (!(fields >> id >> parent >> dev >> root >> mount_point) || dev != want) continue;
    UniqueFd fd(::open(mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd) return fd;
  }
  throw UnsupportedError(fmt::format("{}: a watched file is on device {}, which has no mount here", where, want));
}

// "wd:1 ino:a7a001 sdev:fe00000 mask:300 ignored_mask:0 fhandle-bytes:8 fhandle-type:1
// f_handle:01a0a70026250cd1": the watched file is found again through its file handle.
// mounts: the mounts opened so far, by device (one read of mountinfo per device, not per watch).
void describe_inotify_watch(const std::string& line, const std::string& root, const std::string& where,
                            std::map<uint32_t, UniqueFd>& mounts, pb::InotifyWatch& w) {
  unsigned wd = 0, sdev = 0, mask = 0, ignored = 0, bytes = 0;
  int type = 0;
  unsigned long ino = 0;
  char hex[2 * 128 + 1] = {};
  if (std::sscanf(line.c_str(), "wd:%x ino:%lx sdev:%x mask:%x ignored_mask:%x fhandle-bytes:%x fhandle-type:%x f_handle:%256s",
                  &wd, &ino, &sdev, &mask, &ignored, &bytes, &type, hex) != 8 ||
      bytes > 128 || std::strlen(hex) != 2 * bytes)
    throw UnsupportedError(fmt::format("{}: cannot read the inotify watch '{}' (no file handle?)", where, line));
  std::vector<unsigned char> handle_buf(sizeof(file_handle) + bytes);
  auto* handle = reinterpret_cast<file_handle*>(handle_buf.data());
  handle->handle_bytes = bytes;
  handle->handle_type = type;
  for (unsigned i = 0; i < bytes; ++i) {
    unsigned byte = 0;
    std::sscanf(hex + 2 * i, "%2x", &byte);
    handle->f_handle[i] = static_cast<unsigned char>(byte);
  }
  auto mount = mounts.find(sdev);
  if (mount == mounts.end()) mount = mounts.emplace(sdev, open_mount_of(sdev, where)).first;
  UniqueFd file(::open_by_handle_at(mount->second.get(), handle, O_PATH | O_CLOEXEC));
  if (!file)
    throw UnsupportedError(fmt::format("{}: the file of inotify watch {} cannot be found again: {}", where, wd,
                                       describe_errno(errno)));
  std::string path = proc::read_link(fmt::format("/proc/self/fd/{}", file.get()));
  if (path.size() > 10 && path.compare(path.size() - 10, 10, " (deleted)") == 0)
    throw UnsupportedError(fmt::format("{}: inotify watch {} is on a deleted file: not supported", where, wd));
  // Seen from the job's root (a container with its own root file system).
  if (root != "/") {
    if (path.compare(0, root.size(), root) != 0 || (path.size() > root.size() && path[root.size()] != '/'))
      throw UnsupportedError(fmt::format("{}: inotify watch {} is on {}, outside the job's root {}", where, wd, path,
                                         root));
    path = path.size() == root.size() ? "/" : path.substr(root.size());
  }
  w.set_wd(static_cast<int32_t>(wd));
  w.set_mask(mask);
  w.set_path(path);
}

// The fd of pid that holds the file of epoll epfd's index-th item added as fd target (the
// kernel keys items by file and fd number, and the number may have been closed since, the
// file staying open at another): target itself when the file is still there, else the first
// fd holding it, by identity (kcmp KCMP_EPOLL_TFD), or -1. fds: the process's fds, listed on
// first need.
int find_epoll_target(pid_t pid, pid_t epoll_pid, int epfd, int target, uint32_t index, std::vector<int>& fds) {
  compat::KcmpEpollSlot slot{static_cast<uint32_t>(epfd), static_cast<uint32_t>(target), index};
  auto same = [&](int fd) {
    const int rc = compat::sys_kcmp(pid, epoll_pid, KCMP_EPOLL_TFD, static_cast<unsigned long>(fd),
                                    reinterpret_cast<unsigned long>(&slot));
    // EBADF: no fd there; ENOENT: no such item (it cannot vanish while the job is frozen).
    if (rc < 0 && errno != EBADF)
      fail_errno(errno, "pid {} fd {} (eventpoll): kcmp(KCMP_EPOLL_TFD) of its fd {} item {} with fd {} of pid {}",
                 epoll_pid, epfd, target, index, fd, pid);
    return rc == 0;
  };
  if (same(target)) return target;
  if (fds.empty()) fds = proc::list_fds(pid);
  for (int fd : fds)
    if (fd != target && same(fd)) return fd;
  return -1;
}

// A periodic timerfd that fired and was not read shows it_value 0: the kernel re-arms it only
// when it is read or asked for its time. Asked here (timerfd_gettime on the same open file,
// taken with pidfd_getfd), it counts the periods missed since into its ticks and runs again,
// as it would for the job's own timerfd_gettime; its time left and ticks are then read again.
void rearm_fired_timerfd(pid_t pid, int fd, const std::string& where, pb::TimerFd& t) {
  UniqueFd pidfd(compat::sys_pidfd_open(pid, 0));
  if (!pidfd) fail_errno(errno, "{}: pidfd_open", where);
  UniqueFd timer(compat::sys_pidfd_getfd(pidfd.get(), fd, 0));
  if (!timer) fail_errno(errno, "{}: pidfd_getfd", where);
  itimerspec its{};
  if (::timerfd_gettime(timer.get(), &its) < 0) fail_errno(errno, "{}: timerfd_gettime", where);
  const auto again = proc::read_fdinfo(::getpid(), timer.get()).extra;
  t.set_ticks(number(require(again, "ticks", where), 10, where));
  t.set_value_ns(to_nanoseconds(its.it_value));
  t.set_interval_ns(to_nanoseconds(its.it_interval));
}

// Events the kernel has queued and the job not read yet cannot be queued again by restore
// (nothing writes into an inotify queue): refused, as a passing state (common/error.h).
void refuse_unread_inotify_events(pid_t pid, int fd, const std::string& where) {
  UniqueFd pidfd(compat::sys_pidfd_open(pid, 0));
  if (!pidfd) fail_errno(errno, "{}: pidfd_open", where);
  UniqueFd copy(compat::sys_pidfd_getfd(pidfd.get(), fd, 0));
  if (!copy) fail_errno(errno, "{}: pidfd_getfd", where);
  int queued = 0;
  if (::ioctl(copy.get(), FIONREAD, &queued) < 0) fail_errno(errno, "{}: ioctl FIONREAD", where);
  if (queued > 0)
    throw PassingStateError(fmt::format("{}: {} byte(s) of events the job has not read yet, which restore could not "
                                        "queue again",
                                        where, queued));
}

}  // namespace

void place_epoll_items(pb::Epoll& epoll, const std::vector<EpollHolder>& holders) {
  const EpollHolder& first = holders.front();
  std::vector<const EpollHolder*> others;  // one fd of each other process
  for (const auto& h : holders)
    if (h.host_pid != first.host_pid &&
        std::none_of(others.begin(), others.end(), [&](const EpollHolder* o) { return o->host_pid == h.host_pid; }))
      others.push_back(&h);
  std::map<int, uint32_t> seen;  // items per fd number so far: kcmp's index among them
  std::map<pid_t, std::vector<int>> fds;
  for (auto& t : *epoll.mutable_targets()) {
    const uint32_t index = seen[t.fd()]++;
    if (!t.has_file_fd() || t.file_fd() >= 0) {  // found in the first holder
      if (!others.empty()) t.set_adder_pid(first.pid);
      continue;
    }
    const EpollHolder* adder = nullptr;
    int at = -1;
    for (const EpollHolder* o : others)
      if ((at = find_epoll_target(o->host_pid, first.host_pid, first.fd, t.fd(), index, fds[o->host_pid])) >= 0) {
        adder = o;
        break;
      }
    if (!adder)
      throw UnsupportedError(fmt::format("pid {} fd {} (eventpoll): it watches a file added as fd {} that is open at "
                                         "no fd of {} now; restore could not watch it again",
                                         first.host_pid, first.fd, t.fd(),
                                         others.empty() ? "the process" : "the processes holding the epoll"));
    t.set_adder_pid(adder->pid);
    if (at == t.fd()) t.clear_file_fd();
    else t.set_file_fd(at);
  }
}

std::optional<std::string> event_file_kind(const std::string& link) {
  for (const char* kind : {"eventfd", "signalfd", "timerfd", "eventpoll"})
    if (link == fmt::format("anon_inode:[{}]", kind)) return std::string(kind);
  if (link == "anon_inode:inotify") return std::string("inotify");
  return std::nullopt;
}

void describe_event_file(pid_t pid, int fd, const std::string& kind,
                         const std::vector<std::pair<std::string, std::string>>& fdinfo, pb::EventFile& ev) {
  const std::string where = fmt::format("pid {} fd {} ({})", pid, fd, kind);
  if (kind == "eventfd") {
    auto* e = ev.mutable_eventfd();
    e->set_count(number(require(fdinfo, "eventfd-count", where), 16, where));
    if (const std::string* sem = field(fdinfo, "eventfd-semaphore")) e->set_semaphore(number(*sem, 10, where) != 0);
  } else if (kind == "signalfd") {
    ev.mutable_signalfd()->set_signal_mask(number(require(fdinfo, "sigmask", where), 16, where));
  } else if (kind == "timerfd") {
    auto* t = ev.mutable_timerfd();
    t->set_clockid(static_cast<int32_t>(number(require(fdinfo, "clockid", where), 10, where)));
    t->set_ticks(number(require(fdinfo, "ticks", where), 10, where));
    t->set_value_ns(duration_ns(require(fdinfo, "it_value", where), where));
    t->set_interval_ns(duration_ns(require(fdinfo, "it_interval", where), where));
    if (t->value_ns() == 0 && t->interval_ns() != 0 && t->ticks() != 0) rearm_fired_timerfd(pid, fd, where, *t);
  } else if (kind == "eventpoll") {
    auto* e = ev.mutable_epoll();
    std::map<int, uint32_t> seen;  // items per fd number so far: kcmp's index among them
    std::vector<int> fds;          // the process's fds, listed once when a file has moved
    for (const auto& [key, value] : fdinfo) {
      if (key != "tfd") continue;
      // "       5 events:       19 data:                5  pos:0 ino:b sdev:f"
      int target = 0;
      unsigned events = 0;
      unsigned long long data = 0;
      if (std::sscanf(value.c_str(), "%d events: %x data: %llx", &target, &events, &data) != 3)
        fail("{}: cannot read the watched file '{}'", where, value);
      auto* t = e->add_targets();
      t->set_fd(target);
      t->set_events(events);
      t->set_data(data);
      const int at = find_epoll_target(pid, pid, fd, target, seen[target]++, fds);
      if (at != target) t->set_file_fd(at);  // -1: not here (place_epoll_items)
    }
  } else if (kind == "inotify") {
    refuse_unread_inotify_events(pid, fd, where);
    auto* in = ev.mutable_inotify();
    const std::string root = proc::read_link(fmt::format("/proc/{}/root", pid));
    std::map<uint32_t, UniqueFd> mounts;
    for (const auto& [key, value] : fdinfo) {
      // "inotify wd:1 ino:...": the fdinfo parser splits at the first colon.
      if (key != "inotify wd") continue;
      describe_inotify_watch("wd:" + value, root, where, mounts, *in->add_watches());
    }
  } else {
    fail("{}: not an event file", where);
  }
}

}  // namespace stasis::dump
