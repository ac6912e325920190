#include "restore/stub.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/error.h"
#include "restore/checks.h"
#include "restore/code_page.h"
#include "restore/files.h"
#include "restore/process.h"
#include "restore/signals.h"

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
    int fd = open(file.path.c_str(), (file.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) fail_errno(errno, "open mapped file {}", file.path);
    struct stat st;
    if (fstat(fd, &st) < 0) fail_errno(errno, "stat mapped file {}", file.path);
    check_same_file(file.path, st, file.identity);
    move_fd(fd, plan.mapped_file_fd(i));
    if (fd != plan.mapped_file_fd(i)) close(fd);
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
    close_all_but(keep);
    open_mapped_files(plan);
    for (size_t i = 0; i < plan.mapped_files.size(); ++i) keep.push_back(plan.mapped_file_fd(i));
    install_fd_table(plan.task.fds, plan.files,
                     {plan.stdio_copy_fd(0), plan.stdio_copy_fd(1), plan.stdio_copy_fd(2)}, keep);
    for (int k = 0; k < 3; ++k) close(plan.stdio_copy_fd(k));
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
  close(control);
  for (;;) pause();
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
