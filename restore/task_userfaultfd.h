// A userfaultfd on the address space of a task being restored, made by the task itself (an
// injected userfaultfd(2)) and taken over by the restorer with pidfd_getfd(2). It lets us fill
// fresh private anonymous memory with UFFDIO_COPY: the kernel allocates each page and copies
// into it in one step, where writing through process_vm_writev first faults in a zeroed page
// per 4 KiB. Ranges are registered for missing-page faults only while the task is stopped;
// the destructor unregisters them and closes the fd.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/fd.h"
#include "restore/remote.h"

namespace stasis::restore {

class TaskUserfaultfd {
 public:
  // Nothing when the kernel refuses (no CONFIG_USERFAULTFD, a seccomp filter...): the caller
  // then writes pages the slow way.
  static std::unique_ptr<TaskUserfaultfd> open(Remote& task);
  ~TaskUserfaultfd();
  TaskUserfaultfd(const TaskUserfaultfd&) = delete;
  TaskUserfaultfd& operator=(const TaskUserfaultfd&) = delete;

  // Registers [start, start+length) (whole private anonymous VMAs) for missing-page faults;
  // false when the kernel does not take this range.
  bool register_range(uint64_t start, uint64_t length);
  // Fills [dst, dst+src.size()) of a registered range, whose pages must all be missing.
  // Safe to call from several threads at once.
  void copy(uint64_t dst, std::span<const std::byte> src) const;

 private:
  TaskUserfaultfd(pid_t pid, UniqueFd fd) : pid_(pid), fd_(std::move(fd)) {}
  pid_t pid_;
  UniqueFd fd_;
  std::vector<std::pair<uint64_t, uint64_t>> registered_;
};

}  // namespace stasis::restore
