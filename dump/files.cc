#include "dump/files.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>

#include "common/compat.h"
#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/proc.h"
#include "dump/event_files.h"
#include "dump/unix_sockets.h"
#include "images/image_file.h"
#include "images/image_type.h"

namespace stasis::dump {

namespace {

const std::string kDeletedSuffix = " (deleted)";

std::string strip_deleted(std::string path) {
  if (path.size() >= kDeletedSuffix.size() &&
      path.compare(path.size() - kDeletedSuffix.size(), kDeletedSuffix.size(), kDeletedSuffix) == 0)
    path.resize(path.size() - kDeletedSuffix.size());
  return path;
}

// Files of proc, sysfs, cgroupfs and the like are views of kernel state: their identity
// (inode, size, mtime) changes on its own and means nothing for the restore.
bool on_kernel_fs(pid_t pid, int fd) {
  struct statfs fs {};
  if (::statfs(fmt::format("/proc/{}/fd/{}", pid, fd).c_str(), &fs) < 0) return false;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case PROC_SUPER_MAGIC:
    case SYSFS_MAGIC:
    case DEVPTS_SUPER_MAGIC:
    case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC:
    case DEBUGFS_MAGIC:
    case TRACEFS_MAGIC:
    case SECURITYFS_MAGIC:
    case BPF_FS_MAGIC:
      return true;
    default:
      return false;
  }
}

int64_t nanoseconds(const struct timespec& t) { return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec; }

std::string boot_id() {
  std::string id = read_file("/proc/sys/kernel/random/boot_id");
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

// The data of a ghost or memfd by its data extents: holes stay holes (a sparse file of 1 TiB
// with a few pages written costs a few pages). Their total is held to the ghost limit.
void read_data_extents(pid_t pid, int fd, const std::string& what, uint64_t size, uint64_t limit, pb::RegFile& f) {
  // O_NOATIME: reading it for the dump is not an access of the job's.
  UniqueFd file = open_or_throw(fmt::format("/proc/{}/fd/{}", pid, fd), O_RDONLY | O_NOATIME);
  std::vector<std::pair<uint64_t, uint64_t>> runs;  // (offset, length)
  uint64_t total = 0;
  for (off_t at = 0; static_cast<uint64_t>(at) < size;) {
    off_t data = ::lseek(file.get(), at, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole from here to the end
    if (data < 0) fail_errno(errno, "pid {} fd {}: lseek SEEK_DATA at {} in {}", pid, fd, at, what);
    off_t hole = ::lseek(file.get(), data, SEEK_HOLE);
    if (hole < 0) fail_errno(errno, "pid {} fd {}: lseek SEEK_HOLE at {} in {}", pid, fd, data, what);
    const uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), size);
    if (end > static_cast<uint64_t>(data)) {
      runs.emplace_back(data, end - static_cast<uint64_t>(data));
      total += end - static_cast<uint64_t>(data);
    }
    at = hole;
  }
  if (total > limit)
    throw UnsupportedError(fmt::format(
        "pid {} fd {}: {} holds {} bytes of data (size {}), over the limit of {} bytes for saving deleted files "
        "and memfds; dump with a larger --ghost-limit to save it",
        pid, fd, what, total, size, limit));
  for (const auto& [offset, length] : runs) {
    pb::DataExtent* e = f.add_extents();
    e->set_offset(offset);
    std::string& out = *e->mutable_data();
    out.resize(length);
    uint64_t done = 0;
    while (done < length) {
      ssize_t n = ::pread(file.get(), out.data() + done, length - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail_errno(errno, "pid {} fd {}: read {} at {}", pid, fd, what, offset + done);
      if (n == 0) break;  // shrunk under us: the job is frozen, so only another process did it
      done += static_cast<uint64_t>(n);
    }
    out.resize(done);
  }
}

UniqueFd grab_fd(int pidfd, pid_t pid, int fd) {
  int raw = compat::sys_pidfd_getfd(pidfd, fd, 0);
  if (raw < 0) fail_errno(errno, "pid {} fd {}: pidfd_getfd", pid, fd);
  return UniqueFd(raw);
}

// The buffered bytes of a pipe, without consuming them: end is the read end duplicated into
// stasis with pidfd_getfd; it is tee()d into a pipe of ours, which we read.
std::string peek_pipe(int end, pid_t pid, int fd, int capacity) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) fail_errno(errno, "pipe2");
  UniqueFd r(p[0]), w(p[1]);
  if (::fcntl(w.get(), F_SETPIPE_SZ, capacity) < 0) fail_errno(errno, "F_SETPIPE_SZ {} on our pipe", capacity);
  std::string data;
  ssize_t n = ::tee(end, w.get(), static_cast<size_t>(capacity), SPLICE_F_NONBLOCK);
  if (n < 0 && errno != EAGAIN) fail_errno(errno, "pid {} fd {}: tee the pipe buffer", pid, fd);
  if (n > 0) {
    data.resize(static_cast<size_t>(n));
    read_exact(r.get(), std::as_writable_bytes(std::span(data.data(), data.size())), "pipe copy");
  }
  return data;
}

}  // namespace

FileCollector::FileCollector(uint64_t ghost_limit, bool leave_running)
    : ghost_limit_(ghost_limit), boot_id_(boot_id()), unix_sockets_(leave_running) {}

pb::FileIdentity identity_of(const struct stat& st) {
  pb::FileIdentity id;
  id.set_dev(st.st_dev);
  id.set_ino(st.st_ino);
  id.set_size(static_cast<uint64_t>(st.st_size));
  id.set_mtime_ns(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec);
  return id;
}

std::string describe_unsupported(const std::string& link, mode_t mode) {
  if (S_ISSOCK(mode) || link.rfind("socket:", 0) == 0) return "socket";
  if (link.rfind("anon_inode:", 0) == 0) {
    std::string kind = link.substr(11);
    if (!kind.empty() && kind.front() == '[') kind = kind.substr(1, kind.size() - 2);
    if (kind.empty()) kind = "anonymous inode";
    return kind;
  }
  if (S_ISBLK(mode)) return "block device";
  if (S_ISFIFO(mode)) return "named FIFO";
  return "file of type " + link;
}

uint64_t FileCollector::find_same(pid_t pid, int fd, pb::FdEntry::Kind kind, const struct stat& st) const {
  // Only fds of the same inode can share an open file description: ask kcmp about those
  // alone, so that a process with thousands of fds does not cost millions of calls.
  auto same_inode = known_by_inode_.find({st.st_dev, st.st_ino});
  if (same_inode == known_by_inode_.end()) return 0;
  for (size_t index : same_inode->second) {
    const Known& k = known_[index];
    if (k.kind != kind) continue;
    int rc = compat::sys_kcmp(k.pid, pid, KCMP_FILE, static_cast<unsigned long>(k.fd), static_cast<unsigned long>(fd));
    if (rc == 0) return k.id;
    if (rc < 0) fail_errno(errno, "kcmp(KCMP_FILE) pid {} fd {} with pid {} fd {}", k.pid, k.fd, pid, fd);
  }
  return 0;
}

pb::RegFile FileCollector::describe_regfile(pid_t pid, int pidfd, int fd, const std::string& link,
                                           const struct stat& st, uint32_t flags, uint64_t pos, uint64_t id) {
  pb::RegFile f;
  f.set_id(id);
  f.set_path(strip_deleted(link));
  f.set_flags(flags);
  f.set_pos(pos);
  f.set_mode(st.st_mode);
  *f.mutable_file() = identity_of(st);
  f.set_boot_id(boot_id_);
  f.set_kernel_fs(on_kernel_fs(pid, fd));
  if (st.st_nlink != 0 && f.path() != link) {
    // " (deleted)" on a file that still has links: either its own name ends so, or the name
    // it was opened by was deleted while another hard link lives on, under a name we do not
    // know; reopening the path would give another file, or none.
    struct stat named {};
    const std::string seen = fmt::format("/proc/{}/root{}", pid, link);
    if (::stat(seen.c_str(), &named) == 0 && named.st_dev == st.st_dev && named.st_ino == st.st_ino) {
      f.set_path(link);
    } else {
      throw UnsupportedError(fmt::format("pid {} fd {}: {}: the name it was opened by was deleted, but the file "
                                         "lives on under {} other name(s), which restore could not find: not "
                                         "supported (open it by a name that stays)",
                                         pid, fd, link, st.st_nlink));
    }
  }
  if (st.st_nlink != 0 || f.kernel_fs()) return f;

  // Deleted while open, or a memfd: restore makes it anew, as it was.
  f.set_deleted(true);
  f.set_uid(st.st_uid);
  f.set_gid(st.st_gid);
  f.set_atime_ns(nanoseconds(st.st_atim));
  const bool memfd = f.path().rfind("/memfd:", 0) == 0 && S_ISREG(st.st_mode);
  if (memfd) {
    f.set_memfd(true);
    f.set_memfd_name(f.path().substr(std::string_view("/memfd:").size()));
    UniqueFd copy = grab_fd(pidfd, pid, fd);
    const int seals = ::fcntl(copy.get(), F_GET_SEALS);
    f.set_seals(seals < 0 ? 0 : static_cast<uint32_t>(seals));  // EINVAL: created without sealing
  } else {
    // The ghost is made again where the file was: a read-only mount would refuse it then.
    struct statvfs vfs {};
    if (::statvfs(fmt::format("/proc/{}/fd/{}", pid, fd).c_str(), &vfs) == 0 && (vfs.f_flag & ST_RDONLY))
      throw UnsupportedError(fmt::format("pid {} fd {}: {} was deleted on a read-only mount: restore could not make "
                                         "it again there",
                                         pid, fd, link));
  }
  // Another description of an inode already seen (a hard link, the file opened again) opens
  // the same ghost: its data is saved once.
  auto [first, inserted] = ghost_by_inode_.try_emplace({st.st_dev, st.st_ino}, id);
  if (!inserted) {
    f.set_same_inode_as(first->second);
    return f;
  }
  if (S_ISREG(st.st_mode))
    read_data_extents(pid, fd, memfd ? "memfd " + f.memfd_name() : "deleted file " + f.path(),
                      static_cast<uint64_t>(st.st_size), ghost_limit_, f);
  return f;
}

void FileCollector::collect_cwd(pid_t pid) {
  // A working directory removed under the process comes back as a ghost directory.
  const std::string cwd_link = fmt::format("/proc/{}/cwd", pid);
  struct stat st {};
  if (::stat(cwd_link.c_str(), &st) < 0) fail_errno(errno, "pid {}: stat its working directory", pid);
  if (st.st_nlink != 0) return;
  const std::string link = proc::read_link(cwd_link);
  pb::RegFile f;
  f.set_id(next_id_++);
  f.set_cwd(true);
  f.set_path(strip_deleted(link));
  f.set_flags(O_RDONLY | O_DIRECTORY);
  f.set_mode(st.st_mode);
  *f.mutable_file() = identity_of(st);
  f.set_boot_id(boot_id_);
  f.set_deleted(true);
  f.set_uid(st.st_uid);
  f.set_gid(st.st_gid);
  f.set_atime_ns(nanoseconds(st.st_atim));
  auto [first, inserted] = ghost_by_inode_.try_emplace({st.st_dev, st.st_ino}, f.id());
  if (!inserted) f.set_same_inode_as(first->second);
  log::debug("pid {}: working directory {} was deleted: saved as a ghost directory", pid, link);
  regfiles_.push_back(std::move(f));
}

std::vector<pb::FdEntry> FileCollector::collect(pid_t pid, const std::vector<InheritedFd>& inherited) {
  std::vector<pb::FdEntry> out;
  int raw_pidfd = compat::sys_pidfd_open(pid, 0);
  if (raw_pidfd < 0) fail_errno(errno, "pidfd_open {}", pid);
  UniqueFd pidfd(raw_pidfd);
  for (int fd : proc::list_fds(pid)) {
    std::string link_path = fmt::format("/proc/{}/fd/{}", pid, fd);
    std::string link = proc::read_link(link_path);
    pb::FdEntry e;
    e.set_fd(fd);
    // fdinfo is read only for fds we keep: proc's parser is strict, and the fdinfo of some
    // kinds we refuse anyway (io_uring with pending polls) has lines it does not accept.
    auto inh = std::find_if(inherited.begin(), inherited.end(), [&](const InheritedFd& i) { return i.fd == fd; });
    if (inh != inherited.end()) {
      e.set_cloexec(proc::read_fdinfo(pid, fd).flags & O_CLOEXEC);
      e.set_kind(pb::FdEntry::INHERITED);
      e.set_file_id(inh->std_fd);
      out.push_back(e);
      log::debug("pid {} fd {}: inherited (standard fd {}): {}", pid, fd, inh->std_fd, link);
      continue;
    }

    struct stat st {};
    if (::stat(link_path.c_str(), &st) < 0) {
      // Sockets and anon inodes stat fine; this is a file we cannot reach at all.
      throw UnsupportedError(fmt::format("pid {} fd {}: {} cannot be examined: {}", pid, fd, link,
                                         describe_errno(errno)));
    }
    pb::FdEntry::Kind kind;
    UniqueFd socket_copy;
    // A named FIFO (opened by its path) is a pipe too: the same buffer, shared by its openers.
    const bool is_fifo = S_ISFIFO(st.st_mode) && link.front() == '/';
    bool is_pipe = S_ISFIFO(st.st_mode) && (link.rfind("pipe:[", 0) == 0 || is_fifo);
    // A FIFO removed while open (a private one: made, opened, unlinked) lives on unnamed.
    const bool fifo_removed =
        is_fifo && link.size() > 10 && link.compare(link.size() - 10, 10, " (deleted)") == 0;
    // A FIFO's inode lives on a file system, an anonymous pipe's on pipefs: ids of their own.
    const uint64_t pipe_id = is_fifo ? (uint64_t{1} << 63) ^ (static_cast<uint64_t>(st.st_dev) << 32) ^ st.st_ino
                                     : static_cast<uint64_t>(st.st_ino);
    if (S_ISREG(st.st_mode) && link.rfind("anon_inode:", 0) != 0 && link.front() == '/') kind = pb::FdEntry::REGULAR;
    else if (S_ISDIR(st.st_mode) && link.front() == '/') kind = pb::FdEntry::DIRECTORY;
    else if (S_ISCHR(st.st_mode) && link.front() == '/') kind = pb::FdEntry::CHARDEV;
    else if (is_pipe) kind = pb::FdEntry::PIPE;
    else if (event_file_kind(link)) kind = pb::FdEntry::EVENT;
    else if (S_ISSOCK(st.st_mode) && UnixSocketCollector::is_unix((socket_copy = grab_fd(pidfd.get(), pid, fd)).get()))
      kind = pb::FdEntry::UNIX_SOCKET;
    else if (auto socket = InetCollector::kind_of(pid, pidfd.get(), fd, link)) kind = *socket;
    else
      throw UnsupportedError(
          fmt::format("pid {} fd {}: {} is not supported yet ({})", pid, fd, describe_unsupported(link, st.st_mode), link));
    if (kind == pb::FdEntry::CHARDEV && terminals_.is_console(pid, st)) {
      // The container's -t terminal (bash keeps it at fd 255): the new one after restore.
      e.set_cloexec(proc::read_fdinfo(pid, fd).flags & O_CLOEXEC);
      e.set_kind(pb::FdEntry::INHERITED);
      e.set_file_id(0);
      out.push_back(e);
      continue;
    }
    if (kind == pb::FdEntry::CHARDEV && terminals_.is_pty(major(st.st_rdev), minor(st.st_rdev))) kind = pb::FdEntry::TTY;
    if (kind == pb::FdEntry::CHARDEV)
      if (auto tty = terminals_.kind(major(st.st_rdev), minor(st.st_rdev))) TerminalCheck::refuse_fd(pid, fd, link, *tty);
    auto info = proc::read_fdinfo(pid, fd);
    e.set_cloexec(info.flags & O_CLOEXEC);
    uint32_t flags = info.flags & ~static_cast<uint32_t>(O_CLOEXEC);
    e.set_kind(kind);

    uint64_t id = find_same(pid, fd, kind, st);
    if (id == 0) {
      id = next_id_++;
      known_by_inode_[{st.st_dev, st.st_ino}].push_back(known_.size());
      known_.push_back({pid, fd, id, kind});
      switch (kind) {
        case pb::FdEntry::REGULAR:
        case pb::FdEntry::DIRECTORY:
          regfiles_.push_back(describe_regfile(pid, pidfd.get(), fd, link, st, flags, info.pos, id));
          break;
        case pb::FdEntry::CHARDEV: {
          pb::CharDev c;
          c.set_id(id);
          c.set_path(link);
          c.set_rdev_major(major(st.st_rdev));
          c.set_rdev_minor(minor(st.st_rdev));
          c.set_flags(flags);
          c.set_pos(info.pos);
          chardevs_.push_back(std::move(c));
          break;
        }
        case pb::FdEntry::PIPE: {
          UniqueFd end = grab_fd(pidfd.get(), pid, fd);
          int cap = ::fcntl(end.get(), F_GETPIPE_SZ);
          if (cap < 0) fail_errno(errno, "pid {} fd {}: F_GETPIPE_SZ", pid, fd);
          pb::PipeEnd p;
          p.set_id(id);
          p.set_pipe_id(pipe_id);
          p.set_flags(flags);
          p.set_capacity(static_cast<uint32_t>(cap));
          if (is_fifo) {
            p.set_fifo_path(fifo_removed ? link.substr(0, link.size() - 10) : link);
            p.set_fifo_removed(fifo_removed);
            p.set_fifo_mode(st.st_mode & 07777);
            p.set_fifo_uid(st.st_uid);
            p.set_fifo_gid(st.st_gid);
          }
          pipes_.push_back(std::move(p));
          if ((flags & O_ACCMODE) != O_WRONLY && !pipe_data_seen_.count(pipe_id)) {
            pb::PipeData d;
            d.set_pipe_id(pipe_id);
            d.set_data(peek_pipe(end.get(), pid, fd, cap));
            pipe_data_seen_.insert(pipe_id);
            if (!d.data().empty()) pipe_data_.push_back(std::move(d));
          }
          break;
        }
        case pb::FdEntry::INET_SOCKET:
        case pb::FdEntry::NETLINK_SOCKET:
          inet_.describe(pid, pidfd.get(), fd, kind, flags, id);
          break;
        case pb::FdEntry::TTY:
          terminals_.describe_pty(pid, pidfd.get(), fd, link, st, flags, id);
          break;
        case pb::FdEntry::EVENT: {
          pb::EventFile ev;
          ev.set_id(id);
          ev.set_flags(flags);
          describe_event_file(pid, fd, *event_file_kind(link), info.extra, ev);
          event_files_.push_back(std::move(ev));
          break;
        }
        case pb::FdEntry::UNIX_SOCKET:
          unix_sockets_.describe(pid, fd, std::move(socket_copy), flags, id);
          break;
        default:
          break;
      }
    }
    if (kind == pb::FdEntry::PIPE && !is_fifo) {  // a FIFO's other end is whoever opens it
      auto& ends = pipe_ends_[st.st_ino];
      ((flags & O_ACCMODE) == O_RDONLY ? ends.read : ends.write) = true;
      if (ends.fd < 0) {
        ends.pid = pid;
        ends.fd = fd;
      }
    }
    e.set_file_id(id);
    if (kind == pb::FdEntry::EVENT && link == "anon_inode:[eventpoll]") epoll_holders_[id].push_back({pid, fd});
    for (const auto& [key, value] : info.extra)
      if (key == "lock") locks_.add(pid, e, value);
    log::debug("pid {} fd {}: kind {} id {} {}", pid, fd, pb::FdEntry::Kind_Name(kind), id, link);
    out.push_back(e);
  }
  terminals_.refuse_controlling_terminal(pid);
  inet_.finish_process(pid);
  collect_cwd(pid);
  return out;
}

void FileCollector::mark_outside_pipes() {
  unix_sockets_.check_peers();
  terminals_.check_pairs();  // a pty slave whose master is outside the job is refused
  terminals_.save_queues();

  // A pipe the job holds one direction of (`producer | job`): restore gives that end a pipe
  // whose other end is closed, with the bytes that were waiting to be read, or connects it
  // to what `stasis restore --inherit-fd` names.
  for (const auto& [ino, ends] : pipe_ends_) {
    if (ends.read && ends.write) continue;
    for (auto& p : pipes_)
      if (p.pipe_id() == ino) p.set_other_end_outside(true);
    log::info("pid {} fd {}: the other end of pipe:[{}] is outside the job; restore closes it, or connects the "
              "job's {} end to a file or fd given with --inherit-fd",
              ends.pid, ends.fd, ino, ends.read ? "read" : "write");
  }
}

void FileCollector::place_epoll_items(const std::map<pid_t, pid_t>& pid_in_job) {
  for (auto& ev : event_files_) {
    if (ev.kind_case() != pb::EventFile::kEpoll) continue;
    std::vector<EpollHolder> holders;  // in the order seen: the first described it
    for (const auto& [pid, fd] : epoll_holders_[ev.id()]) {
      auto it = pid_in_job.find(pid);
      holders.push_back({pid, it == pid_in_job.end() ? 0 : it->second, fd});
    }
    if (!holders.empty()) dump::place_epoll_items(*ev.mutable_epoll(), holders);
  }
}

void FileCollector::write_images(const std::filesystem::path& dir) {
  unix_sockets_.write_images(dir);
  using images::ImageType;
  auto write_all_records = [&](ImageType type, const auto& records) {
    images::ImageWriter w(dir / images::image_file_name(type), type);
    for (const auto& r : records) w.write(r);
    w.close();
  };
  write_all_records(ImageType::RegFiles, regfiles_);
  write_all_records(ImageType::Pipes, pipes_);
  write_all_records(ImageType::PipeData, pipe_data_);
  write_all_records(ImageType::CharDevs, chardevs_);
  write_all_records(ImageType::EventFiles, event_files_);
  inet_.write_images(dir);
  terminals_.write_images(dir);
}

}  // namespace stasis::dump
