#include "restore/mounts.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include "common/error.h"
#include "common/fd.h"
#include "common/mountinfo.h"
#include "images/image_file.h"

namespace stasis::restore {

namespace {

bool climbs_out(const std::string& path) {
  size_t at = 0;
  while (at <= path.size()) {
    size_t slash = path.find('/', at);
    if (slash == std::string::npos) slash = path.size();
    if (path.compare(at, slash - at, "..") == 0 && slash - at == 2) return true;
    at = slash + 1;
  }
  return false;
}

std::string kind_name(const pb::MountEntry& m) {
  switch (m.kind()) {
    case pb::MountEntry::TMPFS: return "tmpfs";
    case pb::MountEntry::BIND: return m.root() ? "root" : "bind mount";
    default: return m.fstype();
  }
}

timespec to_timespec(int64_t ns) { return timespec{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)}; }

// Recreates the files of one tmpfs under its root fd, parents first; directory times last
// (their entries change them).
void fill_tmpfs(const pb::MountEntry& m, int root, const std::vector<pb::TmpfsFile>& files) {
  std::vector<const pb::TmpfsFile*> dirs;
  for (const pb::TmpfsFile& f : files) {
    const std::string where = m.mount_point() + f.path();
    const std::string rel = f.path().empty() ? "." : f.path().substr(1);
    const mode_t type = f.mode() & S_IFMT;
    const mode_t perm = f.mode() & 07777;
    if (!f.link_to().empty()) {
      if (::linkat(root, f.link_to().substr(1).c_str(), root, rel.c_str(), 0) < 0)
        fail_errno(errno, "link {} to {}{}", where, m.mount_point(), f.link_to());
      continue;
    }
    if (type == S_IFDIR) {
      if (!f.path().empty() && ::mkdirat(root, rel.c_str(), 0700) < 0) fail_errno(errno, "mkdir {}", where);
      dirs.push_back(&f);
    } else if (type == S_IFREG) {
      UniqueFd fd(::openat(root, rel.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!fd) fail_errno(errno, "create {}", where);
      size_t done = 0;
      while (done < f.data().size()) {
        ssize_t n = ::write(fd.get(), f.data().data() + done, f.data().size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail_errno(errno, "write {}", where);
        done += static_cast<size_t>(n);
      }
      if (f.size() > f.data().size() && ::ftruncate(fd.get(), static_cast<off_t>(f.size())) < 0)
        fail_errno(errno, "set the size of {}", where);
    } else if (type == S_IFLNK) {
      if (::symlinkat(f.target().c_str(), root, rel.c_str()) < 0) fail_errno(errno, "symlink {}", where);
    } else if (type == S_IFIFO || type == S_IFCHR || type == S_IFBLK) {
      if (::mknodat(root, rel.c_str(), type | 0600, static_cast<dev_t>(f.rdev())) < 0) fail_errno(errno, "mknod {}", where);
    } else {
      fail("{}: file type {:o} cannot be recreated", where, type);
    }
    // Owner before mode: a chown clears the set-id bits.
    if (::fchownat(root, rel.c_str(), f.uid(), f.gid(), AT_SYMLINK_NOFOLLOW) < 0)
      fail_errno(errno, "chown {} to {}:{}", where, f.uid(), f.gid());
    if (type != S_IFLNK && ::fchmodat(root, rel.c_str(), perm, 0) < 0) fail_errno(errno, "chmod {} {:o}", where, perm);
    if (type != S_IFDIR) {
      const timespec times[2] = {to_timespec(f.atime_ns()), to_timespec(f.mtime_ns())};
      if (::utimensat(root, rel.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0) fail_errno(errno, "set the times of {}", where);
    }
  }
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    const pb::TmpfsFile& f = **it;
    if (f.atime_ns() == 0 && f.mtime_ns() == 0) continue;  // a covered mount point: times unknown
    const std::string rel = f.path().empty() ? "." : f.path().substr(1);
    const timespec times[2] = {to_timespec(f.atime_ns()), to_timespec(f.mtime_ns())};
    if (::utimensat(root, rel.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0)
      fail_errno(errno, "set the times of {}{}", m.mount_point(), f.path());
  }
}

void set_propagation(const pb::MountEntry& m, const std::string& target) {
  auto apply = [&](unsigned long flag, const char* what) {
    if (::mount(nullptr, target.c_str(), nullptr, flag, nullptr) < 0)
      fail_errno(errno, "make {} {}", m.mount_point(), what);
  };
  if (m.unbindable()) return apply(MS_UNBINDABLE, "unbindable");
  if (m.slave()) apply(MS_SLAVE, "a slave");
  if (m.shared()) apply(MS_SHARED, "shared");
  if (!m.slave() && !m.shared()) apply(MS_PRIVATE, "private");
}

// root: where the job's tree is being built ("" when the mounts go into the container as it is).
void mount_one(const pb::MountEntry& m, const MountPlan& plan, const std::string& root = "") {
  const std::string target_path = root.empty() ? m.mount_point() : root + m.mount_point();
  const char* target = target_path.c_str();
  struct stat st {};
  if (::lstat(target, &st) < 0)
    fail_errno(errno, "the mount point {} is missing in the restored container", m.mount_point());
  const unsigned long flags = static_cast<unsigned long>(m.flags());
  switch (m.kind()) {
    case pb::MountEntry::BIND: {
      const std::string source =
          !m.host_source().empty() ? m.host_source() : (root.empty() ? m.source() : root + m.source());
      if (::lstat(source.c_str(), &st) < 0) fail_errno(errno, "its bind source {} is missing", source);
      if (::mount(source.c_str(), target, nullptr, MS_BIND, nullptr) < 0)
        fail_errno(errno, "bind-mount {} on {}", source, m.mount_point());
      // A bind takes its flags from a remount.
      if (::mount(nullptr, target, nullptr, MS_REMOUNT | MS_BIND | flags, nullptr) < 0)
        fail_errno(errno, "remount {} with flags {:#x}", m.mount_point(), flags);
      break;
    }
    case pb::MountEntry::TMPFS: {
      if (::mount(m.source().c_str(), target, "tmpfs", flags & ~static_cast<unsigned long>(MS_RDONLY),
                  m.fs_options().c_str()) < 0)
        fail_errno(errno, "mount tmpfs on {} with options '{}'", m.mount_point(), m.fs_options());
      {
        UniqueFd root(::open(target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!root) fail_errno(errno, "open {}", m.mount_point());
        auto it = plan.files.find(m.mount_id());
        if (it != plan.files.end()) fill_tmpfs(m, root.get(), it->second);
      }
      // Read-only once filled: the superblock (a remount) and/or this mount (a bind remount).
      if (m.fs_read_only() && ::mount(nullptr, target, nullptr, MS_REMOUNT | MS_RDONLY, m.fs_options().c_str()) < 0)
        fail_errno(errno, "make the tmpfs at {} read-only", m.mount_point());
      if ((flags & MS_RDONLY) && ::mount(nullptr, target, nullptr, MS_REMOUNT | MS_BIND | flags, nullptr) < 0)
        fail_errno(errno, "make {} read-only", m.mount_point());
      break;
    }
    default:
      if (::mount(m.source().c_str(), target, m.fstype().c_str(), flags,
                  m.fs_options().empty() ? nullptr : m.fs_options().c_str()) < 0)
        fail_errno(errno, "mount {} on {} with options '{}'", m.fstype(), m.mount_point(), m.fs_options());
  }
  set_propagation(m, target_path);
}

bool has_root(const MountPlan& plan) { return !plan.mounts.empty() && plan.mounts.front().root(); }

// The tree of a job dumped by pid in a mount namespace of its own: its root (a directory of
// this host) bound onto itself in the container's namespace, every mount made under it in
// the dumped order (host directories bound from here, before they go out of sight), then
// pivot_root into it; the old root goes, with the launcher's /proc on it.
void build_root(const MountPlan& plan, const std::function<void(const pb::MountEntry&, const std::string&)>& after_each) {
  const pb::MountEntry& r = plan.mounts.front();
  const std::string& root = r.host_source();
  if (::mount(root.c_str(), root.c_str(), nullptr, MS_BIND, nullptr) < 0)
    fail_errno(errno, "bind the job's root {} onto itself", root);
  for (size_t i = 1; i < plan.mounts.size(); ++i) {
    const pb::MountEntry& m = plan.mounts[i];
    with_context(fmt::format("restore the job's {} at {}", kind_name(m), m.mount_point()), [&] {
      mount_one(m, plan, root);
      if (after_each) after_each(m, root + m.mount_point());
    });
  }
  if (::chdir(root.c_str()) < 0) fail_errno(errno, "chdir {}", root);
  if (::syscall(SYS_pivot_root, ".", ".") < 0) fail_errno(errno, "pivot_root into the job's root {}", root);
  if (::umount2(".", MNT_DETACH) < 0) fail_errno(errno, "detach the old root after pivot_root into {}", root);
  if (::chdir("/") < 0) fail_errno(errno, "chdir / in the job's root {}", root);
  const unsigned long flags = static_cast<unsigned long>(r.flags());
  if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | flags, nullptr) < 0)
    fail_errno(errno, "remount the job's root {} with flags {:#x}", root, flags);
  set_propagation(r, "/");
}

}  // namespace

bool is_under(const std::string& path, const std::string& dir) {
  return path == dir || (path.rfind(dir, 0) == 0 && path.size() > dir.size() && path[dir.size()] == '/');
}

MountPlan load_mounts(const images::Checkpoint& checkpoint) {
  using images::ImageType;
  MountPlan plan;
  if (!checkpoint.exists(ImageType::Mounts)) return plan;
  plan.mounts = images::read_all<pb::MountEntry>(checkpoint.path(ImageType::Mounts), ImageType::Mounts);
  for (const auto& m : plan.mounts) {
    if (m.kind() == pb::MountEntry::UNKNOWN || m.kind() > pb::MountEntry::CGROUP)
      fail("{}: the mount at {} is of a kind this stasis does not know ({})", checkpoint.dir().string(),
           m.mount_point(), static_cast<int>(m.kind()));
    if (m.mount_point().empty() || m.mount_point()[0] != '/' || climbs_out(m.mount_point()))
      fail("{}: mounts.img names an invalid mount point '{}'", checkpoint.dir().string(), m.mount_point());
    const bool bad_host_source = !m.host_source().empty() &&
                                 (m.host_source()[0] != '/' || climbs_out(m.host_source()) || (m.host_source() == "/" && !m.root()));
    if (bad_host_source || (m.root() && (&m != &plan.mounts.front() || m.mount_point() != "/")) ||
        (has_root(plan) && m.kind() == pb::MountEntry::BIND && m.host_source().empty() && climbs_out(m.source())))
      fail("{}: mounts.img holds an invalid entry at '{}'", checkpoint.dir().string(), m.mount_point());
  }
  if (checkpoint.exists(ImageType::Tmpfs)) {
    images::ImageReader reader(checkpoint.path(ImageType::Tmpfs), ImageType::Tmpfs);
    for (pb::TmpfsFile f; reader.read(f);) {
      const bool bad_path = (!f.path().empty() && f.path()[0] != '/') || climbs_out(f.path()) ||
                            (!f.link_to().empty() && (f.link_to()[0] != '/' || climbs_out(f.link_to())));
      if (bad_path) fail("{}: tmpfs.img names an invalid path '{}'", checkpoint.dir().string(), f.path());
      plan.files[f.mount_id()].push_back(std::move(f));
    }
  }
  return plan;
}

void relocate_mounts(MountPlan& plan, const std::string& root, const std::map<std::string, std::string>& external) {
  for (auto& m : plan.mounts) {
    if (m.root()) {
      if (!root.empty()) m.set_host_source(root);
      continue;
    }
    if (m.kind() != pb::MountEntry::BIND || m.host_source().empty()) continue;
    auto it = external.find(m.mount_point());
    if (it == external.end()) continue;
    if (it->second.empty() || it->second[0] != '/' || climbs_out(it->second))
      fail("the source {} given for the bind mount at {} is not an absolute path", it->second, m.mount_point());
    m.set_host_source(it->second);
  }
}

void check_mount_sources(const MountPlan& plan, const std::string& rootfs) {
  for (const auto& m : plan.mounts) {
    if (m.kind() != pb::MountEntry::BIND || m.source_on_job_mount()) continue;
    if (!m.host_source().empty()) {
      // A directory of the dumping host: the job's root, or a bind under it.
      struct stat st {};
      if (::stat(m.host_source().c_str(), &st) < 0)
        throw Error(fmt::format("the job's {} at {} is {} of this host, which is missing ({}): restore it where that "
                                "path exists; nothing was started",
                                kind_name(m), m.mount_point(), m.host_source(), errno_name(errno)));
      if (S_ISDIR(st.st_mode) != m.directory())
        throw Error(fmt::format("the job's {} at {} needs {} of this host to be a {}, and it is not; nothing was "
                                "started",
                                kind_name(m), m.mount_point(), m.host_source(), m.directory() ? "directory" : "file"));
      continue;
    }
    // What the launcher mounts afresh is not on the host's side to look at.
    if (is_under(m.source(), "/proc")) continue;
    if (!rootfs.empty() && (is_under(m.source(), "/dev") || is_under(m.source(), "/sys"))) continue;
    const std::string host_path = rootfs.empty() ? m.source() : rootfs + m.source();
    struct stat st {};
    if (::stat(host_path.c_str(), &st) < 0)
      throw Error(fmt::format("the job's bind mount at {} needs its source {} ({} on this host), which is missing "
                              "({}): restore it where that path exists; nothing was started",
                              m.mount_point(), m.source(), host_path, errno_name(errno)));
    if (S_ISDIR(st.st_mode) != m.directory())
      throw Error(fmt::format("the job's bind mount at {} needs its source {} ({} on this host) to be a {}, and it is "
                              "not; nothing was started",
                              m.mount_point(), m.source(), host_path, m.directory() ? "directory" : "file"));
  }
}

std::string path_on_host(const MountPlan& plan, const std::string& rootfs, const std::string& job_path) {
  const bool root = has_root(plan);
  std::string path = job_path;
  // A bind of a place of the job's tree leads to that place: at most one step per entry.
  for (size_t step = 0; step <= plan.mounts.size(); ++step) {
    // The mount that shows path: the deepest mount point holding it, the last one there.
    const pb::MountEntry* on = nullptr;
    for (const auto& m : plan.mounts)
      if ((m.mount_point() == "/" || is_under(path, m.mount_point())) &&
          (!on || m.mount_point().size() >= on->mount_point().size()))
        on = &m;
    // Without a root of its own the job sees the host's tree outside its mounts.
    if (!on) return root ? "" : (rootfs.empty() ? path : rootfs + path);
    const std::string rest = on->mount_point() == "/" ? path : path.substr(on->mount_point().size());
    if (!on->host_source().empty()) return on->host_source() == "/" ? rest : on->host_source() + rest;
    if (on->kind() != pb::MountEntry::BIND) return "";
    path = on->source() + rest;
  }
  return "";
}

void restore_mounts(const MountPlan& plan,
                    const std::function<void(const pb::MountEntry&, const std::string&)>& after_each) {
  if (has_root(plan)) {
    build_root(plan, after_each);
  } else {
    for (const auto& m : plan.mounts)
      with_context(fmt::format("restore the job's {} at {}", kind_name(m), m.mount_point()), [&] {
        mount_one(m, plan);
        if (after_each) after_each(m, m.mount_point());
      });
  }
  if (plan.mounts.empty()) return;
  // The kernel decides part of the propagation (a bind of a slave is a slave): check it came
  // out as dumped.
  // Several mounts stacked at one place are the last ones there, in the same order.
  const std::vector<MountInfo> now = read_mountinfo(0);
  for (size_t i = 0; i < plan.mounts.size(); ++i) {
    const pb::MountEntry& m = plan.mounts[i];
    size_t above = 0;  // entries after this one at the same place
    for (size_t j = i + 1; j < plan.mounts.size(); ++j) above += plan.mounts[j].mount_point() == m.mount_point();
    auto it = now.rbegin();
    for (size_t skip = above + 1;; ++it) {
      if (it == now.rend()) break;
      if (it->mount_point == m.mount_point() && --skip == 0) break;
    }
    if (it == now.rend()) fail("the job's {} at {} is not in the restored mount table", kind_name(m), m.mount_point());
    if ((it->shared != 0) != m.shared() || (it->master != 0) != m.slave() || it->unbindable != m.unbindable())
      fail("the job's {} at {} came back with another propagation (shared {}, slave {}, unbindable {}) than dumped "
           "(shared {}, slave {}, unbindable {})",
           kind_name(m), m.mount_point(), it->shared != 0, it->master != 0, it->unbindable, m.shared(), m.slave(),
           m.unbindable());
  }
}

}  // namespace stasis::restore
