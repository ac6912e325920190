#include "restore/task_userfaultfd.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/compat.h"
#include "common/error.h"
#include "common/fault.h"
#include "common/log.h"

namespace stasis::restore {

std::unique_ptr<TaskUserfaultfd> TaskUserfaultfd::open(Remote& task) {
  const pid_t pid = task.host_pid();
  if (fault_active("restore-no-userfaultfd")) return nullptr;  // tests of the fallback
  long remote_fd = task.call(SYS_userfaultfd, O_CLOEXEC);
  if (remote_fd < 0) {
    log::debug("pid {}: userfaultfd: {}; pages go in with process_vm_writev", pid,
               describe_errno(static_cast<int>(-remote_fd)));
    return nullptr;
  }
  UniqueFd fd;
  UniqueFd pidfd(compat::sys_pidfd_open(pid, 0));
  if (pidfd) fd.reset(compat::sys_pidfd_getfd(pidfd.get(), static_cast<int>(remote_fd), 0));
  int saved_errno = errno;
  task.call(SYS_close, static_cast<uint64_t>(remote_fd));  // ours now, or given up
  if (!fd) {
    log::debug("pid {}: pidfd_getfd of its userfaultfd: {}", pid, describe_errno(saved_errno));
    return nullptr;
  }
  uffdio_api api{};
  api.api = UFFD_API;
  if (::ioctl(fd.get(), UFFDIO_API, &api) < 0) {
    log::debug("pid {}: UFFDIO_API: {}", pid, describe_errno(errno));
    return nullptr;
  }
  return std::unique_ptr<TaskUserfaultfd>(new TaskUserfaultfd(pid, std::move(fd)));
}

TaskUserfaultfd::~TaskUserfaultfd() {
  for (const auto& [start, length] : registered_) {
    uffdio_range range{start, length};
    if (::ioctl(fd_.get(), UFFDIO_UNREGISTER, &range) < 0) {
      // Closing the fd below unregisters everything anyway.
      log::debug("pid {}: UFFDIO_UNREGISTER {:#x}+{:#x}: {}", pid_, start, length, describe_errno(errno));
    }
  }
}

bool TaskUserfaultfd::register_range(uint64_t start, uint64_t length) {
  uffdio_register reg{};
  reg.range = {start, length};
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (::ioctl(fd_.get(), UFFDIO_REGISTER, &reg) < 0) {
    log::debug("pid {}: UFFDIO_REGISTER {:#x}+{:#x}: {}", pid_, start, length, describe_errno(errno));
    return false;
  }
  registered_.emplace_back(start, length);
  return true;
}

void TaskUserfaultfd::copy(uint64_t dst, std::span<const std::byte> src) const {
  uint64_t done = 0;
  while (done < src.size()) {
    uffdio_copy c{};
    c.dst = dst + done;
    c.src = reinterpret_cast<uint64_t>(src.data()) + done;
    c.len = src.size() - done;
    if (::ioctl(fd_.get(), UFFDIO_COPY, &c) == 0) return;
    // EAGAIN: the address space changed under the copy, which did c.copy bytes; go on.
    if (errno == EAGAIN && c.copy > 0) {
      done += static_cast<uint64_t>(c.copy);
      continue;
    }
    if (errno == EAGAIN || errno == EINTR) continue;
    fail_errno(errno, "pid {}: UFFDIO_COPY of {} bytes at {:#x}", pid_, src.size() - done, dst + done);
  }
}

}  // namespace stasis::restore
