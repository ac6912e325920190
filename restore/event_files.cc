#include "restore/event_files.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <set>

#include "common/error.h"

namespace stasis::restore {

namespace {

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

timespec to_timespec(uint64_t ns) {
  return timespec{static_cast<time_t>(ns / 1000000000ull), static_cast<long>(ns % 1000000000ull)};
}

UniqueFd checked(int fd, const char* what) {
  if (fd < 0) fail_errno(errno, "{}", what);
  return UniqueFd(fd);
}

}  // namespace

UniqueFd open_event_file(const pb::EventFile& file) {
  const int nonblock = (file.flags() & O_NONBLOCK) ? O_NONBLOCK : 0;
  switch (file.kind_case()) {
    case pb::EventFile::kEventfd: {
      const auto& e = file.eventfd();
      UniqueFd fd = checked(::eventfd(0, EFD_CLOEXEC | nonblock | (e.semaphore() ? EFD_SEMAPHORE : 0)), "eventfd");
      const uint64_t count = e.count();
      if (count != 0 && ::write(fd.get(), &count, sizeof count) != sizeof count)
        fail_errno(errno, "eventfd: set the count to {}", count);
      return fd;
    }
    case pb::EventFile::kSignalfd: {
      const uint64_t mask = file.signalfd().signal_mask();
      return checked(static_cast<int>(::syscall(SYS_signalfd4, -1, &mask, sizeof mask, SFD_CLOEXEC | nonblock)),
                     "signalfd");
    }
    case pb::EventFile::kTimerfd: {
      const auto& t = file.timerfd();
      UniqueFd fd = checked(::timerfd_create(t.clockid(), TFD_CLOEXEC | nonblock), "timerfd_create");
      if (t.value_ns() != 0) {
        itimerspec its{to_timespec(t.interval_ns()), to_timespec(t.value_ns())};
        if (::timerfd_settime(fd.get(), 0, &its, nullptr) < 0) fail_errno(errno, "timerfd_settime");
      }
      uint64_t ticks = t.ticks();
      if (ticks != 0 && ::ioctl(fd.get(), TFD_IOC_SET_TICKS, &ticks) < 0)
        fail_errno(errno, "timerfd: set {} unread expirations (TFD_IOC_SET_TICKS)", ticks);
      return fd;
    }
    case pb::EventFile::kEpoll:
      return checked(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1");
    default:
      fail("eventfiles.img: event file {} of no known kind", file.id());
  }
}

void add_epoll_targets(const std::vector<pb::FdEntry>& fds, const FileImages& images) {
  std::set<uint64_t> done;  // one epoll file can be at several fds: add its targets once
  for (const auto& entry : fds) {
    if (entry.kind() != pb::FdEntry::EVENT || !done.insert(entry.file_id()).second) continue;
    auto it = images.event_files.find(entry.file_id());
    if (it == images.event_files.end() || it->second.kind_case() != pb::EventFile::kEpoll) continue;
    for (const auto& t : it->second.epoll().targets()) {
      epoll_event ev{};
      ev.events = t.events();
      ev.data.u64 = t.data();
      if (::epoll_ctl(entry.fd(), EPOLL_CTL_ADD, t.fd(), &ev) < 0)
        fail_errno(errno, "epoll fd {}: watch fd {} again (events {:#x})", entry.fd(), t.fd(), t.events());
    }
  }
}

}  // namespace stasis::restore
