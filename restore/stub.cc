#include "restore/stub.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "restore/checks.h"
#include "restore/code_page.h"
#include "restore/files.h"
#include "restore/mounts.h"
#include "restore/process.h"
#include "restore/signals.h"
#include "restore/inet_sockets.h"
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

// A memfd as the mapping had it, sized now; its pages are written in through the mapping.
int make_memfd(const MappedFile& file) {
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
  return fd;
}

// MAP_SHARED anonymous memory of `size` bytes, as an fd of its shmem object (map_files), so
// that other processes can map the same object.
int make_anon_shared(uint64_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail_errno(errno, "mmap {} bytes of shared anonymous memory", size);
  const auto start = reinterpret_cast<uintptr_t>(p);
  const std::string path = fmt::format("/proc/self/map_files/{:x}-{:x}", start, start + size);
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  const int err = errno;
  munmap(p, size);
  if (fd < 0) fail_errno(err, "open {}", path);
  return fd;
}

void open_mapped_files(const RestorePlan& plan) {
  for (size_t i = 0; i < plan.mapped_files.size(); ++i) {
    const MappedFile& file = plan.mapped_files[i];
    if (file.shared_slot >= 0) {
      // Made once for the tree, inherited (restore/tree.h).
      move_fd(plan.shared_fd(static_cast<size_t>(file.shared_slot)), plan.mapped_file_fd(i));
      continue;
    }
    if (file.memfd) {
      int fd = make_memfd(file);
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
    if (!file.memfd || file.shared_slot >= 0) continue;
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

// The open files this process makes for the tree (restore/tree.h), into their slots.
void make_shared_files(const RestoreTree& tree, int index) {
  const RestorePlan& layout = tree.processes.front();
  const std::array<int, 3> stdio{layout.stdio_copy_fd(0), layout.stdio_copy_fd(1), layout.stdio_copy_fd(2)};
  std::optional<FileOpener> opener;
  std::vector<pb::FdEntry> made;  // at their slots
  for (size_t j = 0; j < tree.shared.size(); ++j) {
    if (tree.shared[j].creator != index) continue;
    if (!opener) opener.emplace(layout.files, stdio, tree.top_fd());
    UniqueFd file = opener->open(tree.shared[j].entry);
    move_fd(file.get(), layout.shared_fd(j));
    if (file.get() == layout.shared_fd(j)) file.release();
    made.push_back(tree.shared[j].entry);
    made.back().set_fd(layout.shared_fd(j));
  }
  if (opener) {
    opener->finish_ptys();
    opener->remove_ghost_names();
    // Out of repair mode here, once, whichever processes hold them (restore/inet_sockets.h).
    finish_inet_sockets(made, layout.files);
  }
  for (size_t j = 0; j < tree.shared_memory.size(); ++j) {
    const SharedMemory& m = tree.shared_memory[j];
    if (m.creator != index) continue;
    int fd;
    if (m.from_shared_file >= 0) {
      // Its fds were just made: the mappings take the same memfd, read-write.
      const std::string self = fmt::format("/proc/self/fd/{}", layout.shared_fd(static_cast<size_t>(m.from_shared_file)));
      fd = open(self.c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0) fail_errno(errno, "memfd {}: open it for its mappings from its fd", m.file.memfd_name);
    } else {
      fd = m.file.memfd ? make_memfd(m.file) : make_anon_shared(m.size);
    }
    move_fd(fd, layout.shared_fd(tree.shared.size() + j));
    if (fd != layout.shared_fd(tree.shared.size() + j)) close(fd);
  }
}

// A child of the caller with the given pid (clone3 set_tid) and exit signal (0: none); returns
// its pid, or 0 in the child. `what` names it in the error.
pid_t clone_with_pid(pid_t pid, int exit_signal, const std::string& what) {
  clone_args args{};
  args.exit_signal = static_cast<uint64_t>(exit_signal);
  args.set_tid = reinterpret_cast<uint64_t>(&pid);
  args.set_tid_size = 1;
  long child = syscall(SYS_clone3, &args, sizeof args);
  if (child < 0) fail_errno(errno, "create {} (clone3 set_tid)", what);
  return static_cast<pid_t>(child);
}

// Takes back the SIGCHLDs a child we made and reaped ourselves has queued (every signal is
// blocked in the stubs), so that the job does not see them.
void take_back_sigchld() {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  const timespec now{0, 0};
  while (sigtimedwait(&chld, nullptr, &now) == SIGCHLD) {
  }
}

// Creates the process `index` as a child of the caller, with its PID; it runs its own stub.
void create_process(const RestoreTree& tree, size_t index, int control_fd) {
  const RestorePlan& plan = tree.processes[index];
  const int exit_signal = plan.task.core.exit_signal();
  const pid_t wanted = plan.task.pid();
  if (clone_with_pid(wanted, exit_signal > 0 ? exit_signal : SIGCHLD, fmt::format("pid {}", wanted)) == 0)
    run_stub(tree, index, control_fd);
}

// The zombie's group is another process's: made by its leader's stub (or a stand-in's), which
// may run a moment after ours. A zombie cannot join it once exited, so it waits for it here.
void join_group_once_made(pid_t pgid) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (setpgid(0, pgid) < 0 && errno == EPERM && std::chrono::steady_clock::now() < deadline)
    usleep(500);  // the group is not there yet
}

// A child that exits at once with the dumped status and stays a zombie until its parent,
// once restored, waits for it, in its process group. Its exit signal is taken back from the
// pending ones (the dumped ones, which come back later, hold the one the parent had not
// handled yet).
void create_zombie(const pb::TaskEntry& entry) {
  const pid_t wanted = entry.pid();
  const pid_t child = clone_with_pid(wanted, SIGCHLD, fmt::format("zombie pid {}", wanted));
  if (child == 0) {
    prctl(PR_SET_NAME, entry.comm().c_str());
    if (entry.sid() == entry.pid()) setsid();
    else if (entry.pgid() == entry.pid()) setpgid(0, 0);
    else if (entry.pgid() != getpgrp()) join_group_once_made(entry.pgid());
    const int status = entry.exit_status();
    if (WIFSIGNALED(status)) {
      const rlimit no_core{0, 0};  // the original dumped its core already, if it did
      setrlimit(RLIMIT_CORE, &no_core);
      signal(WTERMSIG(status), SIG_DFL);
      sigset_t one;
      sigemptyset(&one);
      sigaddset(&one, WTERMSIG(status));
      sigprocmask(SIG_UNBLOCK, &one, nullptr);
      raise(WTERMSIG(status));
    }
    _exit(WEXITSTATUS(status));
  }
  siginfo_t info{};
  if (waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT) < 0)
    fail_errno(errno, "wait for zombie pid {} to exit", wanted);
  take_back_sigchld();
  if (getpgid(child) != entry.pgid())
    fail("zombie pid {}: it could not join process group {} before it exited (it is in group {})", wanted,
         entry.pgid(), getpgid(child));
}

// A stand-in for a session leader that has exited: it takes the leader's pid, makes the
// session, creates the members (orphans of PID 1, whose parent PID 1 becomes again when the
// stand-in leaves) and exits; the caller, PID 1, reaps it at once.
void create_session_helper(const RestoreTree& tree, pid_t sid, const std::vector<size_t>& members, int control_fd) {
  const pid_t child = clone_with_pid(sid, SIGCHLD, fmt::format("a stand-in for the leader of session {}", sid));
  if (child == 0) {
    prctl(PR_SET_NAME, "stasis-session");
    try {
      if (setsid() < 0) fail_errno(errno, "setsid");
      for (size_t m : members) create_process(tree, m, control_fd);
    } catch (const std::exception& e) {
      report_failure(control_fd, sid, fmt::format("stand-in for the leader of session {}: {}", sid, e.what()));
      _exit(1);
    }
    _exit(0);
  }
  int status = 0;
  if (waitpid(child, &status, 0) < 0) fail_errno(errno, "reap the stand-in for session {}", sid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("the stand-in for session {} failed", sid);
  take_back_sigchld();
}

// A stand-in for the leader of a process group that has exited: a child of the caller (in
// the members' session) with the leader's pid, which makes the group for the members to join
// and waits to be killed once they have (rebuild.cc). Its exit signal is none, so that its
// parent, the job's process, is told nothing when it goes.
void create_group_stand_in(pid_t pgid) {
  if (clone_with_pid(pgid, 0, fmt::format("a stand-in for the leader of process group {}", pgid)) == 0) {
    prctl(PR_SET_NAME, "stasis-group");
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setpgid(0, 0);
    for (;;) pause();  // every signal blocked (run_stub): until SIGKILL
  }
}

}  // namespace

void report_failure(int control_fd, pid_t pid, const std::string& what) {
  StubReport bad;
  bad.pid = pid;
  std::strncpy(bad.error, what.c_str(), sizeof bad.error - 1);
  report(control_fd, bad);
}

void prepare_container(const RestoreTree& tree, int control_fd, bool keep_stdio) {
  const RestorePlan& plan = tree.processes.front();
  move_fd(control_fd, plan.control_fd());
  for (int k = 0; k < 3; ++k)
    if (dup3(k, plan.stdio_copy_fd(k), O_CLOEXEC) < 0) fail_errno(errno, "stub: copy fd {}", k);
  std::vector<int> keep{plan.control_fd(), plan.stdio_copy_fd(0), plan.stdio_copy_fd(1), plan.stdio_copy_fd(2)};
  if (keep_stdio) keep.insert(keep.end(), {0, 1, 2});
  for (size_t i = 0; i < plan.inherited_source_fds.size(); ++i) {
    move_fd(plan.inherited_source_fds[i], plan.inherited_fd(i));
    keep.push_back(plan.inherited_fd(i));
  }
  // A terminal made outside the job, for runc: a new one in the job's own devpts once that is
  // mounted (before a bind of it at /dev/console), else from the job's /dev/ptmx.
  const int terminal_socket = plan.files.console ? tree.terminal_socket : -1;
  if (terminal_socket >= 0) keep.push_back(terminal_socket);
  close_all_but(keep);
  bool terminal_made = false;
  const auto make_terminal = [&](const std::string& ptmx) {
    make_terminal_for_client(*plan.files.console, ptmx, plan.stdio_copy_fd(0), terminal_socket);
    terminal_made = true;
  };
  restore_mounts(plan.mounts, [&](const pb::MountEntry& m, const std::string& now_at) {
    if (terminal_socket >= 0 && !terminal_made && m.kind() == pb::MountEntry::DEVPTS &&
        is_under(plan.files.console->path(), m.mount_point()))
      make_terminal(now_at + "/ptmx");
  });  // before any file of the job is opened
  if (terminal_socket >= 0) {
    if (!terminal_made) make_terminal("/dev/ptmx");
    close(terminal_socket);
  }
}

void start_processes(const RestoreTree& tree, int parent, int control_fd) {
  make_shared_files(tree, parent);
  // A session leader takes its pty before it makes the processes of its session, which
  // inherit it as their controlling terminal.
  if (parent != kInitProcess) {
    const RestorePlan& plan = tree.processes[static_cast<size_t>(parent)];
    if (plan.task.entry.sid() == plan.task.pid())
      take_controlling_pty(plan.task.pid(), plan.files.ptys, tree.shared_fds());
  }
  if (parent != kInitProcess)
    for (pid_t pgid : tree.processes[static_cast<size_t>(parent)].task.entry.group_stand_ins())
      create_group_stand_in(pgid);
  std::map<pid_t, std::vector<size_t>> helped;  // session -> its members, orphans of PID 1
  for (size_t child : tree.children_of(parent)) {
    const pb::TaskEntry& e = tree.processes[child].task.entry;
    if (e.via_session_helper()) helped[e.sid()].push_back(child);
    else create_process(tree, child, control_fd);
  }
  // The members go to their parent when the stand-in leaves only if it is a subreaper then
  // (PID 1 is the namespace's reaper anyway); it is one, or not, as dumped by the end.
  const bool borrow_subreaper = !helped.empty() && parent != kInitProcess;
  if (borrow_subreaper && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) fail_errno(errno, "prctl(PR_SET_CHILD_SUBREAPER)");
  for (const auto& [sid, members] : helped) create_session_helper(tree, sid, members, control_fd);
  if (borrow_subreaper && !tree.processes[static_cast<size_t>(parent)].task.core.child_subreaper() &&
      prctl(PR_SET_CHILD_SUBREAPER, 0) < 0)
    fail_errno(errno, "prctl(PR_SET_CHILD_SUBREAPER, 0)");
  for (const auto& z : tree.zombies)
    if (z.parent == parent) create_zombie(z.entry);
}

[[noreturn]] void run_stub(const RestoreTree& tree, size_t index, int control_fd) {
  // No signal may run a handler of ours, nor one of the target's, until the end.
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  const RestorePlan& plan = tree.processes[index];
  // PID 1 moves the control pipe to its place first thing; the others inherit it there.
  int control = index == 0 && tree.own_pid_1() ? control_fd : plan.control_fd();
  try {
    if (index == 0 && tree.own_pid_1()) {
      control = plan.control_fd();
      prepare_container(tree, control_fd, /*keep_stdio=*/false);
    }
    // A session leader before its children, which inherit the session (restore/tree.h).
    if (plan.task.entry.sid() == plan.task.pid() && getsid(0) != plan.task.pid() && setsid() < 0)
      fail_errno(errno, "setsid");
    // A terminal made outside the job that was this session's (a runc console, a shell job)
    // is again: taken from PID 1's session when our init holds it (1: steal, as root may).
    if (index == 0 && plan.files.console && plan.files.console->session() == plan.task.pid() &&
        tcgetsid(plan.stdio_copy_fd(0)) != getsid(0) && ioctl(plan.stdio_copy_fd(0), TIOCSCTTY, 1) < 0)
      fail_errno(errno, "make the job's terminal the controlling terminal of its session {}", plan.task.pid());
    // A group leader too, before its children, which inherit the group (the other members
    // join later, restore/rebuild.h).
    if (plan.task.entry.pgid() == plan.task.pid() && getpgrp() != plan.task.pid() && setpgid(0, 0) < 0)
      fail_errno(errno, "setpgid(0, 0)");
    start_processes(tree, static_cast<int>(index), control);
    std::vector<int> keep{plan.control_fd(), plan.stdio_copy_fd(0), plan.stdio_copy_fd(1), plan.stdio_copy_fd(2)};
    for (int i = 0; i < plan.inherited_count; ++i) keep.push_back(plan.inherited_fd(static_cast<size_t>(i)));
    for (int j = 0; j < plan.shared_count; ++j) keep.push_back(plan.shared_fd(static_cast<size_t>(j)));
    open_mapped_files(plan);
    for (size_t i = 0; i < plan.mapped_files.size(); ++i) keep.push_back(plan.mapped_file_fd(i));
    install_fd_table(plan.task.pid(), plan.task.fds, plan.files,
                     {plan.stdio_copy_fd(0), plan.stdio_copy_fd(1), plan.stdio_copy_fd(2)}, keep, tree.shared_fds(),
                     plan.task.core.cwd());
    // The -t terminal's settings, once, by the tree's first process (its session leader),
    // and its foreground group; a pty of the job's that a session leader here took, its
    // foreground group (the groups' leaders run their stubs beside us).
    if (index == 0 && plan.files.console)
      restore_console(*plan.files.console, plan.stdio_copy_fd(0), tree.has_process(plan.files.console->foreground_pgrp()));
    if (plan.task.entry.sid() == plan.task.pid())
      restore_pty_foreground(plan.task.pid(), plan.files.ptys, tree.shared_fds());
    for (int k = 0; k < 3; ++k) close(plan.stdio_copy_fd(k));
    for (int i = 0; i < plan.inherited_count; ++i) close(plan.inherited_fd(static_cast<size_t>(i)));
    for (int j = 0; j < plan.shared_count; ++j) close(plan.shared_fd(static_cast<size_t>(j)));
    share_mapped_memfds(plan);
    apply_process_attributes(plan.task.core);
    install_signal_actions(plan.signals());
    apply_rlimits(plan.task.core);
    StubReport ok;
    ok.ok = 1;
    ok.pid = plan.task.pid();
    ok.code_page = map_code_page(plan.task.mm);
    report(control, ok);
  } catch (const std::exception& e) {
    report_failure(control, plan.task.pid(), fmt::format("pid {}: {}", plan.task.pid(), e.what()));
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

std::vector<StubReport> read_stub_reports(int control_fd, pid_t init_host_pid, size_t count, int timeout_ms) {
  std::vector<StubReport> out;
  int waited = 0;
  while (out.size() < count) {
    StubReport r;
    size_t got = 0;
    while (got < sizeof r) {
      pollfd p{control_fd, POLLIN, 0};
      int n = poll(&p, 1, 100);
      if (n < 0 && errno != EINTR) fail_errno(errno, "wait for the restore stubs");
      if (n > 0) {
        ssize_t k = read(control_fd, reinterpret_cast<char*>(&r) + got, sizeof r - got);
        if (k < 0 && errno != EINTR) fail_errno(errno, "read the restore stubs' reports");
        if (k == 0)
          fail("the restore stubs (init pid {}) exited with {} of {} reports", init_host_pid, out.size(), count);
        if (k > 0) got += static_cast<size_t>(k);
        continue;
      }
      waited += 100;
      if (kill(init_host_pid, 0) < 0) fail("the restore stub (init pid {}) died before reporting", init_host_pid);
      if (waited >= timeout_ms)
        fail("the restore stubs (init pid {}) did not report within {} ms ({} of {} did)", init_host_pid, timeout_ms,
             out.size(), count);
    }
    if (!r.ok) fail("restore stub: {}", r.error);
    out.push_back(r);
  }
  return out;
}

}  // namespace stasis::restore
