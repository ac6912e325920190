#include "restore/stub.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/error.h"
#include "restore/checks.h"
#include "restore/code_page.h"
#include "restore/files.h"
#include "restore/mounts.h"
#include "restore/process.h"
#include "restore/signals.h"
#include "restore/terminals.h"

namespace stasis::restore {
namespace {

void move_fd(int from, int to) {
  if (from == to) return;
  if (dup3(from, to, O_CLOEXEC) < 0) fail_errno(errno, "stub: move fd {} to {}", from, to);
}

// Closes every fd of the stub but those in keep.
void close_all_but(const std::vector<int>& keep) {
  std::vector<int> open_fds;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) fail_errno(errno, "stub: open /proc/self/fd");
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    int fd = atoi(entry->d_name);
    if (fd != dirfd(dir)) open_fds.push_back(fd);
  }
  closedir(dir);
  for (int fd : open_fds)
    if (std::find(keep.begin(), keep.end(), fd) == keep.end()) close(fd);
}

void open_mapped_files(const RestorePlan& plan) {
  for (size_t i = 0; i < plan.mapped_files.size(); ++i) {
    const MappedFile& file = plan.mapped_files[i];
    if (file.memfd) {
      // Sized now; its pages are written in through the mapping.
      int fd = static_cast<int>(syscall(SYS_memfd_create, file.memfd_name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
      if (fd < 0) fail_errno(errno, "memfd_create {}", file.memfd_name);
      if (ftruncate(fd, static_cast<off_t>(file.memfd_size)) < 0)
        fail_errno(errno, "memfd {}: set its size to {}", file.memfd_name, file.memfd_size);
      // Owner and mode as dumped, before the seals (F_SEAL_EXEC would stop the chmod).
      if (file.memfd_mode != 0 && (fchown(fd, file.memfd_uid, file.memfd_gid) < 0 || fchmod(fd, file.memfd_mode & 07777) < 0))
        fail_errno(errno, "memfd {}: set owner {}:{} and mode {:o}", file.memfd_name, file.memfd_uid, file.memfd_gid,
                   file.memfd_mode & 07777);
      // No write seal comes this way (the dump refuses them): the pages can still go in after.
      if (file.memfd_seals != 0 && fcntl(fd, F_ADD_SEALS, file.memfd_seals) < 0)
        fail_errno(errno, "memfd {}: add seals {:#x}", file.memfd_name, file.memfd_seals);
      move_fd(fd, plan.mapped_file_fd(i));
      if (fd != plan.mapped_file_fd(i)) close(fd);
      continue;
    }
    int fd = open(file.path.c_str(), (file.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) fail_errno(errno, "open mapped file {}", file.path);
    struct stat st;
    if (fstat(fd, &st) < 0) fail_errno(errno, "stat mapped file {}", file.path);
    check_same_file(file.path, st, file.identity);
    move_fd(fd, plan.mapped_file_fd(i));
    if (fd != plan.mapped_file_fd(i)) close(fd);
  }
}

// A mapped memfd that the process also has an fd of must be that fd's memfd: the one
// made for the mapping gives way to it.
void share_mapped_memfds(const RestorePlan& plan) {
  for (size_t i = 0; i < plan.mapped_files.size(); ++i) {
    const MappedFile& file = plan.mapped_files[i];
    if (!file.memfd) continue;
    for (const auto& entry : plan.task.fds) {
      if (entry.kind() != pb::FdEntry::REGULAR) continue;
      auto it = plan.files.regfiles.find(entry.file_id());
      if (it == plan.files.regfiles.end() || !it->second.memfd() || it->second.file().ino() != file.shmem_id) continue;
      if (dup3(entry.fd(), plan.mapped_file_fd(i), O_CLOEXEC) < 0)
        fail_errno(errno, "memfd {}: share fd {} with its mapping", file.memfd_name, entry.fd());
      break;
    }
  }
}

void report(int control_fd, const StubReport& r) {
  ssize_t n;
  do n = write(control_fd, &r, sizeof r);
  while (n < 0 && errno == EINTR);
}

}  // namespace

[[noreturn]] void run_stub(const RestorePlan& plan, int control_fd) {
  // No signal may run a handler of ours, nor one of the target's, until the end.
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  int control = control_fd;
  try {
    move_fd(control_fd, plan.control_fd());
    control = plan.control_fd();
    for (int k = 0; k < 3; ++k) move_fd(k, plan.stdio_copy_fd(k));
    std::vector<int> keep{plan.control_fd(), plan.stdio_copy_fd(0), plan.stdio_copy_fd(1), plan.stdio_copy_fd(2)};
    for (size_t i = 0; i < plan.inherited_source_fds.size(); ++i) {
      move_fd(plan.inherited_source_fds[i], plan.inherited_fd(i));
      keep.push_back(plan.inherited_fd(i));
    }
    close_all_but(keep);
    restore_mounts(plan.mounts);  // before any file of the job is opened
    open_mapped_files(plan);
    for (size_t i = 0; i < plan.mapped_files.size(); ++i) keep.push_back(plan.mapped_file_fd(i));
    install_fd_table(plan.task.fds, plan.files,
                     {plan.stdio_copy_fd(0), plan.stdio_copy_fd(1), plan.stdio_copy_fd(2)}, keep);
    if (plan.files.console) restore_console(*plan.files.console, plan.stdio_copy_fd(0));
    for (int k = 0; k < 3; ++k) close(plan.stdio_copy_fd(k));
    for (size_t i = 0; i < plan.inherited_source_fds.size(); ++i) close(plan.inherited_fd(i));
    share_mapped_memfds(plan);
    apply_process_attributes(plan.task.core);
    install_signal_actions(plan.signals());
    apply_rlimits(plan.task.core);
    StubReport ok;
    ok.ok = 1;
    ok.code_page = map_code_page(plan.task.mm);
    report(control, ok);
  } catch (const std::exception& e) {
    StubReport bad;
    std::strncpy(bad.error, e.what(), sizeof bad.error - 1);
    report(control, bad);
    _exit(1);
  }
  // Seized here by the restorer. Should it die first, the read end of the control pipe
  // closes (poll reports POLLERR on our write end) and the stub leaves, so that a killed
  // restore does not leave a container that looks alive (the restorer closes this fd in the
  // job once it has it).
  for (;;) {
    pollfd p{control, 0, 0};
    if (poll(&p, 1, -1) > 0 && (p.revents & (POLLERR | POLLHUP))) _exit(1);
  }
}

StubReport read_stub_report(int control_fd, pid_t init_host_pid, int timeout_ms) {
  StubReport r;
  size_t got = 0;
  for (int waited = 0; got < sizeof r;) {
    pollfd p{control_fd, POLLIN, 0};
    int n = poll(&p, 1, 100);
    if (n < 0 && errno != EINTR) fail_errno(errno, "wait for the restore stub");
    if (n > 0) {
      ssize_t k = read(control_fd, reinterpret_cast<char*>(&r) + got, sizeof r - got);
      if (k < 0 && errno != EINTR) fail_errno(errno, "read the restore stub's report");
      if (k == 0) fail("the restore stub (init pid {}) exited without reporting", init_host_pid);
      if (k > 0) got += static_cast<size_t>(k);
      continue;
    }
    waited += 100;
    if (kill(init_host_pid, 0) < 0) fail("the restore stub (init pid {}) died before reporting", init_host_pid);
    if (waited >= timeout_ms) fail("the restore stub (init pid {}) did not report within {} ms", init_host_pid, timeout_ms);
  }
  if (!r.ok) fail("restore stub: {}", r.error);
  return r;
}

}  // namespace stasis::restore
