#include "dump/mounts.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <map>
#include <set>

#include "common/error.h"
#include "common/fd.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/mountinfo.h"
#include "common/proc.h"
#include "images/format.h"
#include "images/image_file.h"

namespace stasis::dump {

namespace {

bool is_under(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.rfind(dir, 0) == 0 && path.size() > dir.size() && path[dir.size()] == '/');
}

std::string join(const std::string& dir, const std::string& rest) {
  if (rest.empty() || rest == "/") return dir;
  if (dir == "/") return rest;
  return dir + rest;
}

// Per-mount flags of mountinfo's fifth field, as mount(2) takes them.
uint64_t mount_flags(const std::string& options) {
  static const std::map<std::string, uint64_t> kFlags{
      {"ro", MS_RDONLY},       {"nosuid", MS_NOSUID},         {"nodev", MS_NODEV},
      {"noexec", MS_NOEXEC},   {"noatime", MS_NOATIME},       {"nodiratime", MS_NODIRATIME},
      {"relatime", MS_RELATIME}, {"strictatime", MS_STRICTATIME}, {"sync", MS_SYNCHRONOUS},
      {"dirsync", MS_DIRSYNC},    {"nosymfollow", 256 /* MS_NOSYMFOLLOW, Linux 5.10 */},
  };
  uint64_t flags = 0;
  size_t at = 0;
  while (at <= options.size()) {
    size_t comma = options.find(',', at);
    if (comma == std::string::npos) comma = options.size();
    auto it = kFlags.find(options.substr(at, comma - at));
    if (it != kFlags.end()) flags |= it->second;
    at = comma + 1;
  }
  // The kernel shows no atime word for strictatime; a mount without one would get relatime.
  if (!(flags & (MS_NOATIME | MS_RELATIME))) flags |= MS_STRICTATIME;
  return flags;
}

// The superblock's options without "rw"/"ro" (the per-mount flag says which).
std::string fs_options(const std::string& options) {
  std::string out;
  size_t at = 0;
  while (at <= options.size()) {
    size_t comma = options.find(',', at);
    if (comma == std::string::npos) comma = options.size();
    std::string o = options.substr(at, comma - at);
    if (!o.empty() && o != "rw" && o != "ro") out += (out.empty() ? "" : ",") + o;
    at = comma + 1;
  }
  return out;
}

std::string describe(const MountInfo& m) { return fmt::format("{} (type {}, source {})", m.mount_point, m.fstype, m.source); }

// The mount id of the file an fd (or a /proc magic link opened O_PATH) points to.
int mnt_id_of(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!fd) return -1;
  try {
    return proc::parse_fdinfo(read_file(fmt::format("/proc/self/fdinfo/{}", fd.get())), path).mnt_id;
  } catch (const Error&) {
    return -1;
  }
}

// Restore opens the job's files before it mounts anything: one that lies on a job's mount
// would not be found.
void refuse_files_on(pid_t pid, const std::map<uint32_t, std::string>& added) {
  auto check = [&](int mnt_id, const std::string& what) {
    auto it = added.find(static_cast<uint32_t>(mnt_id));
    if (it == added.end()) return;
    throw UnsupportedError(fmt::format(
        "pid {}: {} lies on the mount at {} that the job made: not supported (restore opens files before it "
        "recreates the job's mounts); close it or move it off that mount before the dump",
        pid, what, it->second));
  };
  for (int fd : proc::list_fds(pid)) {
    try {
      check(proc::read_fdinfo(pid, fd).mnt_id, fmt::format("fd {} ({})", fd, proc::read_fd_link(pid, fd)));
    } catch (const Error&) {
      // closed meanwhile
    }
  }
  check(mnt_id_of(fmt::format("/proc/{}/cwd", pid)), "its working directory");
  check(mnt_id_of(fmt::format("/proc/{}/root", pid)), "its root directory");
  for (const auto& vma : proc::read_maps(pid)) {
    if (vma.path.empty() || vma.path[0] != '/') continue;
    check(mnt_id_of(fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, vma.start, vma.end)),
          fmt::format("the file mapped at {:#x}-{:#x} ({})", vma.start, vma.end, vma.path));
  }
}

// Reads a tmpfs instance, reached through the job's root, into TmpfsFile records.
class TmpfsReader {
 public:
  TmpfsReader(const pb::MountEntry& entry, dev_t dev, uint64_t limit, std::vector<pb::TmpfsFile>& out)
      : entry_(entry), dev_(dev), limit_(limit), out_(out) {}

  uint64_t read(const std::string& root_path) {
    UniqueFd root(::open(root_path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root) fail_errno(errno, "open the tmpfs at {} ({})", entry_.mount_point(), root_path);
    struct stat st {};
    if (::fstat(root.get(), &st) < 0) fail_errno(errno, "stat the tmpfs at {}", entry_.mount_point());
    if (st.st_dev != dev_)
      throw UnsupportedError(fmt::format("the tmpfs at {} that the job mounted is hidden under another mount there: "
                                         "its contents cannot be read",
                                         entry_.mount_point()));
    add("", st, root.get(), "");
    walk(root.get(), "");
    return bytes_;
  }

 private:
  void walk(int dir_fd, const std::string& rel) {
    UniqueFd copy(::dup(dir_fd));
    if (!copy) fail_errno(errno, "dup");
    DIR* dir = ::fdopendir(copy.get());
    if (!dir) fail_errno(errno, "read the directory {}{}", entry_.mount_point(), rel);
    copy.release();
    std::vector<std::string> names;
    while (dirent* e = ::readdir(dir)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(std::move(name));
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      const std::string path = rel + "/" + name;
      struct stat st {};
      if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
        fail_errno(errno, "stat {}{}", entry_.mount_point(), path);
      if (st.st_dev != dev_) {
        // Another mount's root covers this entry: only a place for it is kept, a directory or,
        // under a file's bind (runc's /dev/console), an empty file (a bind needs the same kind).
        pb::TmpfsFile& f = out_.emplace_back();
        f.set_mount_id(entry_.mount_id());
        f.set_path(path);
        f.set_mode(S_ISDIR(st.st_mode) ? (S_IFDIR | 0755) : (S_IFREG | 0644));
        continue;
      }
      add(path, st, dir_fd, name);
      if (S_ISDIR(st.st_mode)) {
        UniqueFd sub(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) fail_errno(errno, "open {}{}", entry_.mount_point(), path);
        walk(sub.get(), path);
      }
    }
  }

  void add(const std::string& path, const struct stat& st, int dir_fd, const std::string& name) {
    pb::TmpfsFile f;
    f.set_mount_id(entry_.mount_id());
    f.set_path(path);
    f.set_mode(st.st_mode);
    f.set_uid(st.st_uid);
    f.set_gid(st.st_gid);
    f.set_atime_ns(st.st_atim.tv_sec * 1000000000ll + st.st_atim.tv_nsec);
    f.set_mtime_ns(st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec);
    const std::string where = entry_.mount_point() + path;
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto [it, first] = links_.emplace(st.st_ino, path);
      if (!first) {
        f.set_link_to(it->second);
        out_.push_back(std::move(f));
        return;
      }
    }
    if (S_ISREG(st.st_mode)) {
      bytes_ += static_cast<uint64_t>(st.st_size);
      if (bytes_ > limit_)
        throw UnsupportedError(fmt::format("the tmpfs at {} holds more than {} bytes of files (at {}): dump with a "
                                           "larger --tmpfs-limit to save it",
                                           entry_.mount_point(), limit_, where));
      if (static_cast<uint64_t>(st.st_size) + 4096 > images::format::kMaxRecordSize)
        throw UnsupportedError(fmt::format("{} on the job's tmpfs is {} bytes: too large for one image record", where,
                                           st.st_size));
      UniqueFd file(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC));
      if (!file) fail_errno(errno, "open {}", where);
      std::string data(static_cast<size_t>(st.st_size), '\0');
      size_t got = 0;
      while (got < data.size()) {
        ssize_t n = ::pread(file.get(), data.data() + got, data.size() - got, static_cast<off_t>(got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail_errno(errno, "read {}", where);
        if (n == 0) break;
        got += static_cast<size_t>(n);
      }
      data.resize(got);
      f.set_size(static_cast<uint64_t>(st.st_size));
      f.set_data(std::move(data));
    } else if (S_ISLNK(st.st_mode)) {
      std::string target(PATH_MAX, '\0');
      ssize_t n = ::readlinkat(dir_fd, name.c_str(), target.data(), target.size());
      if (n < 0) fail_errno(errno, "readlink {}", where);
      target.resize(static_cast<size_t>(n));
      f.set_target(target);
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      f.set_rdev(st.st_rdev);
    } else if (S_ISSOCK(st.st_mode)) {
      throw UnsupportedError(fmt::format("{} on the job's tmpfs is a socket file: not supported (a socket cannot be "
                                         "recreated from its file)",
                                         where));
    }
    out_.push_back(std::move(f));
  }

  const pb::MountEntry& entry_;
  dev_t dev_;
  uint64_t limit_;
  std::vector<pb::TmpfsFile>& out_;
  uint64_t bytes_ = 0;
  std::map<ino_t, std::string> links_;  // first path of each hard-linked inode
};

// A mount of the host that reached the container by propagation after the start (the
// container's tree is a slave of the host's): not the job's; it comes back the same way.
bool propagated_from_host(const MountInfo& m, const std::vector<MountInfo>& host, const std::string& rootfs) {
  if (m.master == 0) return false;
  const std::string host_point = rootfs.empty() ? m.mount_point : join(rootfs, m.mount_point == "/" ? "" : m.mount_point);
  for (const MountInfo& h : host)
    if (h.mount_point == host_point && h.shared == m.master) return true;
  return false;
}

std::string relative(const std::string& path, const std::string& dir) {
  if (dir == "/") return path;
  return path.substr(dir.size());
}

// A copy the kernel made of an earlier mount of the job's (y) by propagation: its parent
// receives mounts from y's parent, and it is y's file system at the same place below it.
// Mounting y again at restore makes it again.
bool propagated_from_job(const MountInfo& x, const std::vector<const MountInfo*>& job_mounts,
                         const std::map<uint32_t, const MountInfo*>& by_id) {
  if (x.master == 0 && x.shared == 0) return false;
  auto parent_x = by_id.find(x.parent);
  if (parent_x == by_id.end()) return false;
  const MountInfo& p = *parent_x->second;
  for (const MountInfo* y : job_mounts) {
    if (y->major != x.major || y->minor != x.minor || y->root != x.root || y->shared == 0) continue;
    if (x.master != y->shared && x.shared != y->shared) continue;
    auto parent_y = by_id.find(y->parent);
    if (parent_y == by_id.end()) continue;
    const MountInfo& q = *parent_y->second;
    const bool receives = q.shared != 0 && (p.master == q.shared || p.shared == q.shared);
    if (receives && is_under(x.mount_point, p.mount_point) && is_under(y->mount_point, q.mount_point) &&
        relative(x.mount_point, p.mount_point) == relative(y->mount_point, q.mount_point))
      return true;
  }
  return false;
}

// Where the directory a mount of the job shows (m, whose stat through the job's root is want)
// lies on this host: under one of our mounts of the same file system whose root holds m's, and
// the very same inode there. "" when none of ours reaches it.
std::string host_path_of(const MountInfo& m, const struct stat& want, const std::vector<MountInfo>& host) {
  for (const MountInfo& h : host) {
    if (h.major != m.major || h.minor != m.minor || !is_under(m.root, h.root)) continue;
    const std::string rest = h.root == "/" ? m.root : m.root.substr(h.root.size());
    const std::string candidate = join(h.mount_point, rest == "/" ? "" : rest);
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && st.st_dev == want.st_dev && st.st_ino == want.st_ino) return candidate;
  }
  return "";
}

uint64_t ns_inode(pid_t pid, const char* kind) {
  struct stat st {};
  const std::string path = pid == 0 ? fmt::format("/proc/self/ns/{}", kind) : fmt::format("/proc/{}/ns/{}", pid, kind);
  if (::stat(path.c_str(), &st) < 0) fail_errno(errno, "stat {}", path);
  return st.st_ino;
}

void fill_common(pb::MountEntry& e, const MountInfo& m) {
  e.set_mount_id(m.id);
  e.set_mount_point(m.mount_point);
  e.set_fstype(m.fstype);
  e.set_source(m.source);
  e.set_fs_options(fs_options(m.super_options));
  e.set_fs_read_only(m.super_options == "ro" || m.super_options.rfind("ro,", 0) == 0);
  e.set_flags(mount_flags(m.mount_options));
  e.set_shared(m.shared != 0);
  e.set_slave(m.master != 0);
  e.set_unbindable(m.unbindable);
}

// The whole mount tree of a job dumped by pid in a mount namespace of its own (a runc
// container, `unshare -m` with pivot_root or chroot): its root as a directory of this host,
// then each mount under it as the job sees it. A mount of a file system the job shows
// earlier in its tree is a bind of that place (runc's read-only /proc/sys, a mask from
// /dev/null); else a new instance of proc, sysfs, mqueue, devpts or cgroup (v1 and v2, seen
// from the restored cgroup namespace); else a bind of a host directory when one of our mounts
// reaches the same inode; else a new tmpfs with its files. Anything else is refused, the job untouched.
MountsDump collect_foreign_tree(pid_t pid, uint64_t tmpfs_limit) {
  const std::string root_link = fmt::format("/proc/{}/root", pid);
  const uint64_t mnt_ns = ns_inode(pid, "mnt");
  const std::string where = fmt::format("pid {} (mount namespace mnt:[{}])", pid, mnt_ns);
  const std::vector<MountInfo> all = read_mountinfo(pid);
  const std::vector<MountInfo> host = read_mountinfo(0);
  struct stat root_st {};
  if (::stat(root_link.c_str(), &root_st) < 0) fail_errno(errno, "stat {}", root_link);

  // The root: the mount the job's root directory is on, shown at "/" when that directory is the
  // mount's root (pivot_root, or a chroot onto a mount point); a chroot into a plain directory
  // of another mount shows no mount there.
  const MountInfo* root_mount = nullptr;
  const int root_id = mnt_id_of(root_link);
  for (const MountInfo& m : all)
    if (static_cast<int>(m.id) == root_id && m.mount_point == "/") root_mount = &m;
  if (!root_mount)
    throw UnsupportedError(fmt::format(
        "{}: its root directory is not the root of a mount (a chroot into a plain directory of another mount "
        "namespace): a dump cannot tell where it lies on this host, and a restore would run the job in the host's root. "
        "Make the job's root a mount point (bind-mount the directory onto itself before chroot or pivot_root) or start "
        "it with `stasis run --rootfs DIR`",
        where));
  const std::string root_host = host_path_of(*root_mount, root_st, host);
  if (root_host.empty())
    throw UnsupportedError(fmt::format(
        "{}: its root ({} of the file system {} mounted from {}) is not reachable from this host's mounts: a dump "
        "cannot record where the job's files are, and a restore would run it in the host's root. Give the job a root "
        "that is a directory of the host (runc's rootfs, a bind mount) or start it with `stasis run --rootfs DIR`",
        where, root_mount->root, root_mount->fstype, root_mount->source));
  MountsDump out;
  std::vector<const MountInfo*> earlier;  // the job's mounts before the current one
  for (size_t i = 0; i < all.size(); ++i) {
    const MountInfo& m = all[i];
    pb::MountEntry e;
    fill_common(e, m);
    if (&m == root_mount) {
      e.set_kind(pb::MountEntry::BIND);
      e.set_root(true);
      e.set_directory(true);
      e.set_host_source(root_host);
      earlier.push_back(&m);
      out.mounts.push_back(std::move(e));
      continue;
    }
    if (m.mount_point == "/") {
      if (&m < root_mount) continue;  // under the job's root, hidden by it
      throw UnsupportedError(fmt::format("{}: a mount over its root directory ({}) cannot be recorded; start the job "
                                         "with `stasis run --rootfs DIR` to checkpoint it",
                                         where, describe(m)));
    }
    struct stat st {};
    const std::string at = root_link + m.mount_point;
    const bool visible = ::stat(at.c_str(), &st) == 0;
    bool covered = false;  // another mount sits on this one at the same place
    for (size_t j = i + 1; j < all.size(); ++j) covered |= all[j].mount_point == m.mount_point;
    const MountInfo* from = nullptr;
    for (const MountInfo* p : earlier) {
      if (p->major != m.major || p->minor != m.minor || !is_under(m.root, p->root)) continue;
      if (!from || p->root.size() > from->root.size()) from = p;
    }
    const bool pseudo = m.fstype == "proc" || m.fstype == "sysfs" || m.fstype == "mqueue" || m.fstype == "devpts" ||
                        m.fstype == "cgroup" || m.fstype == "cgroup2";
    std::string host_source;
    if (!from && !pseudo && visible && !covered) host_source = host_path_of(m, st, host);
    if (from) {
      e.set_kind(pb::MountEntry::BIND);
      const std::string rest = from->root == "/" ? m.root : m.root.substr(from->root.size());
      e.set_source(join(from->mount_point, rest == "/" ? "" : rest));
      e.set_source_on_job_mount(true);
    } else if (!host_source.empty()) {
      e.set_kind(pb::MountEntry::BIND);
      e.set_host_source(host_source);
    } else if (m.fstype == "proc") {
      e.set_kind(pb::MountEntry::PROC);
    } else if (m.fstype == "sysfs") {
      e.set_kind(pb::MountEntry::SYSFS);
    } else if (m.fstype == "mqueue") {
      e.set_kind(pb::MountEntry::MQUEUE);
    } else if (m.fstype == "devpts") {
      e.set_kind(pb::MountEntry::DEVPTS);
    } else if (m.fstype == "cgroup" || m.fstype == "cgroup2") {
      e.set_kind(pb::MountEntry::CGROUP);
    } else if (m.fstype == "tmpfs" && m.root == "/" && !covered) {
      e.set_kind(pb::MountEntry::TMPFS);
      TmpfsReader reader(e, makedev(m.major, m.minor), tmpfs_limit, out.files);
      e.set_tmpfs_bytes(with_context(fmt::format("dump the tmpfs at {}", m.mount_point), [&] {
        return reader.read(at);
      }));
    } else {
      throw UnsupportedError(fmt::format(
          "{}: its mount at {} cannot be recorded: it is neither a bind of a directory of this host nor a new tmpfs, "
          "proc, sysfs, mqueue, devpts or cgroup instance{}; a restore could not rebuild the job's root. Unmount it "
          "in the job or start the job with `stasis run --rootfs DIR -v HOST:PATH`",
          where, describe(m), covered ? " (another mount covers it)" : ""));
    }
    if (e.kind() == pb::MountEntry::BIND) {
      if (!visible) fail_errno(errno, "{}: stat its mount at {}", where, m.mount_point);
      e.set_directory(S_ISDIR(st.st_mode));
    }
    earlier.push_back(&m);
    out.mounts.push_back(std::move(e));
  }
  log::debug("{}: root {} and {} mount(s) recorded, {} tmpfs entries", where, root_host, out.mounts.size() - 1,
             out.files.size());
  return out;
}

}  // namespace

MountsDump collect_mounts(pid_t pid, const pb::NamespaceState& namespaces, const pb::ContainerState* state,
                          uint64_t tmpfs_limit) {
  bool own = false;
  for (const auto& ns : namespaces.namespaces())
    if (ns.kind() == "mnt") own = ns.own();
  // A process dumped by pid, in a mount namespace other than ours: its whole tree (one that
  // shares ours is restored in a copy of it, see NamespaceEntry.rejoin).
  if (!state && ns_inode(pid, "mnt") != ns_inode(0, "mnt")) return collect_foreign_tree(pid, tmpfs_limit);
  if (!own || !state) return {};
  const std::string& name = state->config().name();
  if (state->launcher_mounts().empty())
    throw UnsupportedError(fmt::format(
        "container {} was started by a stasis that did not record its own mounts: the mounts its job made cannot be "
        "told apart from them; start it again with this version to checkpoint it",
        name));
  const std::set<std::string> launcher(state->launcher_mounts().begin(), state->launcher_mounts().end());
  const std::vector<MountInfo> all = read_mountinfo(pid);
  const std::vector<MountInfo> host = read_mountinfo(0);
  const std::string& rootfs = state->config().rootfs();

  MountsDump out;
  std::map<uint32_t, std::string> added_points;  // mount id -> mount point, of the job's mounts
  std::vector<const MountInfo*> earlier;         // every mount before the current one
  std::vector<const MountInfo*> job_mounts;      // the job's, saved
  std::map<uint32_t, const MountInfo*> by_id;
  for (const MountInfo& m : all) by_id[m.id] = &m;
  for (size_t i = 0; i < all.size(); ++i) {
    const MountInfo& m = all[i];
    const bool job_made = !launcher.count(mount_key(m)) && !propagated_from_host(m, host, rootfs) &&
                          !propagated_from_job(m, job_mounts, by_id);
    if (!job_made) {
      earlier.push_back(&m);
      continue;
    }
    pb::MountEntry e;
    fill_common(e, m);
    // The same file system mounted before: a bind, whose source is the directory of the
    // earlier mount with the longest root that holds ours.
    const MountInfo* from = nullptr;
    bool same_fs_seen = false;
    for (const MountInfo* p : earlier) {
      if (p->major != m.major || p->minor != m.minor) continue;
      same_fs_seen = true;
      if (!is_under(m.root, p->root)) continue;
      if (!from || p->root.size() > from->root.size()) from = p;
    }
    if (same_fs_seen) {
      if (!from)
        throw UnsupportedError(fmt::format("the job's bind mount at {}: its source (directory {} of that file system) "
                                           "is no longer reachable in the container",
                                           describe(m), m.root));
      e.set_kind(pb::MountEntry::BIND);
      const std::string rest = from->root == "/" ? m.root : m.root.substr(from->root.size());
      e.set_source(join(from->mount_point, rest == "/" ? "" : rest));
      e.set_source_on_job_mount(added_points.count(from->id) > 0);
      struct stat st {};
      const std::string at = fmt::format("/proc/{}/root{}", pid, m.mount_point);
      if (::stat(at.c_str(), &st) < 0) fail_errno(errno, "stat the job's mount at {}", m.mount_point);
      e.set_directory(S_ISDIR(st.st_mode));
    } else if (m.fstype == "tmpfs") {
      if (m.root != "/")
        throw UnsupportedError(fmt::format("the job's mount at {} shows directory {} of a tmpfs no longer mounted "
                                           "elsewhere: not supported",
                                           describe(m), m.root));
      for (size_t j = i + 1; j < all.size(); ++j)
        if ((all[j].parent == m.id || all[j].parent == m.parent) && all[j].mount_point == m.mount_point)
          throw UnsupportedError(fmt::format("the tmpfs the job mounted at {} is covered by a later mount there: its "
                                             "contents cannot be read",
                                             m.mount_point));
      e.set_kind(pb::MountEntry::TMPFS);
      TmpfsReader reader(e, makedev(m.major, m.minor), tmpfs_limit, out.files);
      e.set_tmpfs_bytes(with_context(fmt::format("dump the tmpfs at {}", m.mount_point), [&] {
        return reader.read(fmt::format("/proc/{}/root{}", pid, m.mount_point));
      }));
    } else if (m.fstype == "proc") {
      e.set_kind(pb::MountEntry::PROC);
    } else if (m.fstype == "sysfs") {
      e.set_kind(pb::MountEntry::SYSFS);
    } else if (m.fstype == "mqueue") {
      e.set_kind(pb::MountEntry::MQUEUE);
    } else if (m.fstype == "devpts") {
      e.set_kind(pb::MountEntry::DEVPTS);
    } else {
      throw UnsupportedError(fmt::format(
          "container {}: the job's mount at {} cannot be checkpointed: of the file systems mounted inside a container "
          "only tmpfs, bind mounts, proc, sysfs, mqueue and devpts are supported",
          name, describe(m)));
    }
    added_points[m.id] = m.mount_point;
    earlier.push_back(&m);
    job_mounts.push_back(&m);
    out.mounts.push_back(std::move(e));
  }
  if (!added_points.empty()) refuse_files_on(pid, added_points);
  log::debug("pid {}: {} mount(s) of the job saved, {} tmpfs entries", pid, out.mounts.size(), out.files.size());
  return out;
}

void write_mounts(const images::Checkpoint& checkpoint, const MountsDump& mounts) {
  if (mounts.mounts.empty()) return;
  using images::ImageType;
  images::ImageWriter w(checkpoint.path(ImageType::Mounts), ImageType::Mounts);
  for (const auto& m : mounts.mounts) w.write(m);
  w.close();
  if (mounts.files.empty()) return;
  images::ImageWriter f(checkpoint.path(ImageType::Tmpfs), ImageType::Tmpfs);
  for (const auto& file : mounts.files) f.write(file);
  f.close();
}

}  // namespace stasis::dump
