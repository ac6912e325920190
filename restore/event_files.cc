#include "restore/event_files.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/timespec.h"

namespace stasis::restore {

namespace {

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif


// A path none of the watches is on: adding and removing a watch there uses up a watch
// descriptor.
std::string spare_path(const pb::Inotify& in) {
  for (const char* candidate : {"/", "/dev/null", "/proc", "/dev", "/etc"}) {
    struct stat c {};
    if (::stat(candidate, &c) < 0) continue;
    bool watched = false;
    for (const auto& w : in.watches()) {
      struct stat s {};
      if (::stat(w.path().c_str(), &s) == 0 && s.st_dev == c.st_dev && s.st_ino == c.st_ino) watched = true;
    }
    if (!watched) return candidate;
  }
  fail("inotify: no spare path to skip watch descriptors with");
}

// Watch descriptors are handed out in increasing order from 1: the watches go in in the
// order of theirs, and the numbers the job had removed are used up on a spare path. The
// events that this queues (IN_IGNORED of those) are read away after.
UniqueFd open_inotify(const pb::Inotify& in, int nonblock) {
  UniqueFd fd(check_sys(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK), "inotify_init1"));
  std::vector<pb::InotifyWatch> watches(in.watches().begin(), in.watches().end());
  std::sort(watches.begin(), watches.end(), [](const auto& a, const auto& b) { return a.wd() < b.wd(); });
  int next = 1;
  std::string spare;
  for (const auto& w : watches) {
    while (next < w.wd()) {
      if (spare.empty()) spare = spare_path(in);
      const int burnt = ::inotify_add_watch(fd.get(), spare.c_str(), IN_ACCESS);
      if (burnt < 0) fail_errno(errno, "inotify: use up watch descriptor {} on {}", next, spare);
      ::inotify_rm_watch(fd.get(), burnt);
      next = burnt + 1;
    }
    const int wd = ::inotify_add_watch(fd.get(), w.path().c_str(), w.mask());
    if (wd < 0) fail_errno(errno, "inotify: watch {} (mask {:#x})", w.path(), w.mask());
    if (wd != w.wd()) fail("inotify: watching {} gave descriptor {}, the job had {}", w.path(), wd, w.wd());
    next = wd + 1;
  }
  char buf[4096];
  while (::read(fd.get(), buf, sizeof buf) > 0) {
  }
  if (!nonblock && ::fcntl(fd.get(), F_SETFL, 0) < 0) fail_errno(errno, "inotify: clear O_NONBLOCK");
  return fd;
}

}  // namespace

UniqueFd open_event_file(const pb::EventFile& file) {
  const int nonblock = (file.flags() & O_NONBLOCK) ? O_NONBLOCK : 0;
  switch (file.kind_case()) {
    case pb::EventFile::kEventfd: {
      const auto& e = file.eventfd();
      UniqueFd fd(check_sys(::eventfd(0, EFD_CLOEXEC | nonblock | (e.semaphore() ? EFD_SEMAPHORE : 0)), "eventfd"));
      const uint64_t count = e.count();
      if (count != 0 && ::write(fd.get(), &count, sizeof count) != sizeof count)
        fail_errno(errno, "eventfd: set the count to {}", count);
      return fd;
    }
    case pb::EventFile::kSignalfd: {
      const uint64_t mask = file.signalfd().signal_mask();
      const int fd = static_cast<int>(::syscall(SYS_signalfd4, -1, &mask, sizeof mask, SFD_CLOEXEC | nonblock));
      return UniqueFd(check_sys(fd, "signalfd"));
    }
    case pb::EventFile::kTimerfd: {
      const auto& t = file.timerfd();
      UniqueFd fd(check_sys(::timerfd_create(t.clockid(), TFD_CLOEXEC | nonblock), "timerfd_create"));
      // Value 0 with an interval and ticks: it fired and waits to be read to run again (a dump
      // asks it for its time, which re-arms it; this is for images that did not). Armed for
      // one period, it runs again; a disarmed one keeps its interval.
      const uint64_t value = t.value_ns() == 0 && t.ticks() != 0 ? t.interval_ns() : t.value_ns();
      if (value != 0 || t.interval_ns() != 0) {
        itimerspec its{to_timespec(t.interval_ns()), to_timespec(value)};
        if (::timerfd_settime(fd.get(), 0, &its, nullptr) < 0) fail_errno(errno, "timerfd_settime");
      }
      uint64_t ticks = t.ticks();
      if (ticks != 0 && ::ioctl(fd.get(), TFD_IOC_SET_TICKS, &ticks) < 0)
        fail_errno(errno, "timerfd: set {} unread expirations (TFD_IOC_SET_TICKS)", ticks);
      return fd;
    }
    case pb::EventFile::kEpoll:
      return UniqueFd(check_sys(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1"));
    case pb::EventFile::kInotify:
      return open_inotify(file.inotify(), nonblock);
    default:
      fail("eventfiles.img: event file {} of no known kind", file.id());
  }
}

namespace {

// Adds one item to the epoll at epfd: the file at t.fd, or, when the job had closed that
// number since (t.file_fd set), its file at t.file_fd, added through a temporary fd at the
// old number so that the item keeps the number the job added it with (EPOLL_CTL_MOD and
// DEL by the file's present number must fail, as they did). Whatever the table has at that
// number is put back after.
void add_epoll_target(int epfd, const pb::EpollTarget& t) {
  epoll_event ev{};
  ev.events = t.events();
  ev.data.u64 = t.data();
  if (!t.has_file_fd()) {
    if (::epoll_ctl(epfd, EPOLL_CTL_ADD, t.fd(), &ev) < 0)
      fail_errno(errno, "epoll fd {}: watch fd {} again (events {:#x})", epfd, t.fd(), t.events());
    return;
  }
  const int number = t.fd();
  UniqueFd epoll_copy;  // the epoll itself may sit at the old number now
  if (epfd == number) {
    epoll_copy = UniqueFd(check_sys(::fcntl(epfd, F_DUPFD_CLOEXEC, 0), "epoll fd {}: dup", epfd));
    epfd = epoll_copy.get();
  }
  const int held_flags = ::fcntl(number, F_GETFD);
  UniqueFd held;  // what the table has at that number
  if (held_flags >= 0)
    held = UniqueFd(check_sys(::fcntl(number, F_DUPFD_CLOEXEC, 0), "epoll: set fd {} aside", number));
  check_sys(::dup3(t.file_fd(), number, O_CLOEXEC), "epoll: put the file of fd {} at its old number {}", t.file_fd(),
            number);
  const int rc = ::epoll_ctl(epfd, EPOLL_CTL_ADD, number, &ev);
  const int err = errno;
  if (held) {
    check_sys(::dup3(held.get(), number, (held_flags & FD_CLOEXEC) ? O_CLOEXEC : 0), "epoll: put fd {} back", number);
  } else {
    ::close(number);
  }
  if (rc < 0)
    fail_errno(err, "epoll fd {}: watch the file of fd {} again as fd {} (events {:#x})", epfd, t.file_fd(), number,
               t.events());
}

}  // namespace

void add_epoll_targets(pid_t pid, const std::vector<pb::FdEntry>& fds, const FileImages& images) {
  std::set<uint64_t> done;  // one epoll file can be at several fds: add its targets once
  for (const auto& entry : fds) {
    if (entry.kind() != pb::FdEntry::EVENT || !done.insert(entry.file_id()).second) continue;
    auto it = images.event_files.find(entry.file_id());
    if (it == images.event_files.end() || it->second.kind_case() != pb::EventFile::kEpoll) continue;
    for (const auto& t : it->second.epoll().targets())
      if (t.adder_pid() == 0 || t.adder_pid() == pid) add_epoll_target(entry.fd(), t);
  }
}

}  // namespace stasis::restore
