#include "restore/regfiles.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <span>

#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"
#include "restore/checks.h"

namespace stasis::restore {
namespace {

// Flags that only matter when a file is created; never reapply them on reopen.
constexpr int kCreationFlags = O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_CLOEXEC;

timespec to_timespec(int64_t ns) { return {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)}; }

std::string parent_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? std::string("/") : path.substr(0, slash);
}

// A name of ours beside path, for when path is taken (reused by a new file) or too long.
std::string spare_name(const std::string& path) {
  static unsigned counter = 0;
  const std::string dir = parent_of(path);
  return fmt::format("{}{}.stasis-ghost-{}-{}", dir, dir == "/" ? "" : "/", getpid(), ++counter);
}

// Writes a ghost's or memfd's data, leaving holes where the dump saw holes.
void write_data(int fd, const pb::RegFile& file, const std::string& name) {
  if (::ftruncate(fd, static_cast<off_t>(file.file().size())) < 0)
    fail_errno(errno, "{}: set its size to {}", name, file.file().size());
  auto put = [&](uint64_t offset, const std::string& data) {
    for (uint64_t done = 0; done < data.size();) {
      ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail_errno(n < 0 ? errno : EIO, "{}: write {} bytes at {}", name, data.size() - done, offset + done);
      done += static_cast<uint64_t>(n);
    }
  };
  if (!file.contents().empty()) put(0, file.contents());  // images from before data extents
  for (const auto& e : file.extents()) put(e.offset(), e.data());
}

// Owner, group and mode as dumped (chown first: it clears set-id bits), and for a file its times.
void set_attributes(int fd, const pb::RegFile& file, const std::string& name) {
  if (::fchown(fd, file.uid(), file.gid()) < 0) fail_errno(errno, "{}: chown to {}:{}", name, file.uid(), file.gid());
  if (::fchmod(fd, file.mode() & 07777) < 0) fail_errno(errno, "{}: chmod {:o}", name, file.mode() & 07777);
  if (S_ISDIR(file.mode())) return;  // later: what is made inside changes its times
  timespec times[2] = {to_timespec(file.atime_ns()), to_timespec(file.file().mtime_ns())};
  if (file.atime_ns() == 0) times[0].tv_nsec = UTIME_OMIT;  // images from before times were saved
  if (::futimens(fd, times) < 0) fail_errno(errno, "{}: set its times", name);
}

void seek_to(int fd, const pb::RegFile& file) {
  // Directories and O_PATH fds have no offset to set (lseek on O_PATH fails with EBADF).
  if (S_ISDIR(file.mode()) || (file.flags() & O_PATH)) return;
  if (::lseek(fd, static_cast<off_t>(file.pos()), SEEK_SET) < 0) fail_errno(errno, "seek {} to {}", file.path(), file.pos());
}

}  // namespace

GhostFiles::~GhostFiles() {
  try {
    remove_names();
  } catch (const std::exception& e) {
    log::warn("{}", e.what());
  }
}

const pb::RegFile& GhostFiles::first_of(const pb::RegFile& file) const {
  if (file.same_inode_as() == 0) return file;
  auto it = images_.regfiles.find(file.same_inode_as());
  if (it == images_.regfiles.end())
    fail("regfiles.img: {} names file {} as its inode, which it does not hold", file.path(), file.same_inode_as());
  return it->second;
}

void GhostFiles::prepare() {
  if (prepared_) return;
  prepared_ = true;
  // Ghost directories first, outer ones before inner ones, so that ghosts made later inside
  // them land in them.
  std::vector<const pb::RegFile*> dirs;
  for (const auto& [id, file] : images_.regfiles)
    if (file.deleted() && S_ISDIR(file.mode()) && file.same_inode_as() == 0) dirs.push_back(&file);
  std::sort(dirs.begin(), dirs.end(), [](auto* a, auto* b) { return a->path().size() < b->path().size(); });
  for (const pb::RegFile* dir : dirs) name_for(*dir, dir->path());
}

std::string GhostFiles::translate(const std::string& path) const {
  size_t best = 0;
  std::string out = path;
  for (const Made& m : made_) {
    if (!m.directory || m.created_parent || m.path.size() <= best) continue;
    if (path.size() > m.path.size() && path.compare(0, m.path.size(), m.path) == 0 && path[m.path.size()] == '/') {
      best = m.path.size();
      out = m.name + path.substr(m.path.size());
    }
  }
  return out;
}

void GhostFiles::make_parents(const std::string& path) {
  // A deleted file in a directory deleted too: the missing directories are made for the
  // time the ghost needs a name, then removed with it.
  std::vector<std::string> missing;
  for (std::string dir = parent_of(path); dir != "/"; dir = parent_of(dir)) {
    struct stat st;
    if (::lstat(dir.c_str(), &st) == 0) break;
    if (errno != ENOENT) fail_errno(errno, "stat {} (to make a deleted file again in it)", dir);
    missing.push_back(dir);
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0700) < 0) fail_errno(errno, "make the missing directory {} for a deleted file", *it);
    made_.push_back({0, *it, *it, true, true});
  }
}

std::string GhostFiles::name_for(const pb::RegFile& first, const std::string& path) {
  for (const Made& m : made_)
    if (!m.created_parent && m.inode_id == first.id() && m.path == path) return m.name;
  const std::string wanted = translate(path);
  make_parents(wanted);
  const bool directory = S_ISDIR(first.mode());
  // Under its own name if it is free, else under a spare one.
  auto try_names = [&](auto&& make) {
    std::string name = wanted;
    if (make(name)) return name;
    if (errno != EEXIST && errno != ENAMETOOLONG) return std::string();
    name = spare_name(wanted);
    return make(name) ? name : std::string();
  };
  auto existing = std::find_if(made_.begin(), made_.end(),
                               [&](const Made& m) { return !m.created_parent && m.inode_id == first.id(); });
  std::string name;
  if (existing != made_.end()) {
    // Another hard link of a ghost already made.
    const std::string target = existing->name;
    name = try_names([&](const std::string& n) { return ::link(target.c_str(), n.c_str()) == 0; });
    if (name.empty()) fail_errno(errno, "link the deleted file {} as {} again", first.path(), wanted);
  } else if (directory) {
    name = try_names([&](const std::string& n) { return ::mkdir(n.c_str(), 0700) == 0; });
    if (name.empty()) fail_errno(errno, "make the deleted directory {} again", wanted);
    made_.push_back({first.id(), path, name, true, false});
    UniqueFd dir = open_or_throw(name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    set_attributes(dir.get(), first, name);
    return name;
  } else {
    int raw = -1;
    name = try_names([&](const std::string& n) {
      raw = ::open(n.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      return raw >= 0;
    });
    if (name.empty()) fail_errno(errno, "make the deleted file {} again", wanted);
    UniqueFd out(raw);
    made_.push_back({first.id(), path, name, false, false});
    write_data(out.get(), first, name);
    set_attributes(out.get(), first, name);
    return name;
  }
  made_.push_back({first.id(), path, name, false, false});
  return name;
}

UniqueFd GhostFiles::open_ghost(const pb::RegFile& file) {
  prepare();
  const std::string name = name_for(first_of(file), file.path());
  UniqueFd fd(::open(name.c_str(), (static_cast<int>(file.flags()) & ~kCreationFlags) | O_CLOEXEC));
  if (!fd) fail_errno(errno, "open the deleted file {} made again as {}", file.path(), name);
  return fd;
}

// A memfd comes back as one: same name, data, owner, mode and seals (added last: a write seal
// would stop the data going in). Every open file description of it reopens the one made.
UniqueFd GhostFiles::open_memfd(const pb::RegFile& file) {
  const pb::RegFile& first = first_of(file);
  auto made = std::find_if(memfds_.begin(), memfds_.end(), [&](const auto& m) { return m.first == first.id(); });
  int ours = made == memfds_.end() ? -1 : made->second;
  if (ours < 0) {
    UniqueFd fd(static_cast<int>(
        ::syscall(SYS_memfd_create, first.memfd_name().c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING)));
    if (!fd) fail_errno(errno, "memfd_create {}", first.memfd_name());
    const std::string name = "memfd " + first.memfd_name();
    write_data(fd.get(), first, name);
    // Images from before owners were saved have uid 0 and mode 0: keep the new memfd's.
    if (first.mode() & 07777) set_attributes(fd.get(), first, name);
    if (first.seals() != 0 && ::fcntl(fd.get(), F_ADD_SEALS, first.seals()) < 0)
      fail_errno(errno, "memfd {}: add seals {:#x}", first.memfd_name(), first.seals());
    UniqueFd kept(::fcntl(fd.get(), F_DUPFD_CLOEXEC, private_fd_base_));
    if (!kept) fail_errno(errno, "memfd {}: move it to fd {} or above", first.memfd_name(), private_fd_base_);
    ours = kept.get();
    memfds_.emplace_back(first.id(), ours);
    memfd_fds_.push_back(std::move(kept));
  }
  const std::string self = fmt::format("/proc/self/fd/{}", ours);
  UniqueFd reopened(::open(self.c_str(), (static_cast<int>(file.flags()) & ~kCreationFlags) | O_CLOEXEC));
  if (!reopened) fail_errno(errno, "reopen memfd {} with flags {:#o}", file.memfd_name(), file.flags());
  return reopened;
}

UniqueFd GhostFiles::open(const pb::RegFile& file) {
  UniqueFd fd;
  if (file.memfd()) {
    fd = open_memfd(file);
  } else if (file.deleted()) {
    fd = open_ghost(file);
  } else {
    fd.reset(::open(file.path().c_str(), (static_cast<int>(file.flags()) & ~kCreationFlags) | O_CLOEXEC));
    if (!fd) fail_errno(errno, "reopen file {}", file.path());
    // Checked before the restore started; again here, in case it changed since.
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) fail_errno(errno, "stat {}", file.path());
    const std::string change = regfile_change(file, st, images_.boot_id);
    const bool same_type = (st.st_mode & S_IFMT) == (file.mode() & S_IFMT);
    if (!change.empty() && !file.kernel_fs() && (!same_type || !images_.changed_ok.count(file.id())))
      fail("file {} changed since the dump ({}); restore with --allow-changed-file {} to accept it", file.path(), change,
           file.path());
  }
  seek_to(fd.get(), file);
  return fd;
}

void GhostFiles::enter_cwd(const pb::RegFile& file) {
  prepare();
  const std::string name = name_for(first_of(file), file.path());
  if (::chdir(name.c_str()) < 0) fail_errno(errno, "enter the deleted working directory {} (made again as {})",
                                           file.path(), name);
}

void GhostFiles::remove_names() {
  memfd_fds_.clear();
  memfds_.clear();
  // Newest first: links before the file, inner names before their directories.
  while (!made_.empty()) {
    Made m = std::move(made_.back());
    made_.pop_back();
    if (m.directory && !m.created_parent) {
      auto it = images_.regfiles.find(m.inode_id);
      if (it != images_.regfiles.end()) {
        const timespec times[2] = {to_timespec(it->second.atime_ns()), to_timespec(it->second.file().mtime_ns())};
        ::utimensat(AT_FDCWD, m.name.c_str(), times, AT_SYMLINK_NOFOLLOW);
      }
    }
    if ((m.directory ? ::rmdir(m.name.c_str()) : ::unlink(m.name.c_str())) < 0)
      fail_errno(errno, "remove {} again (made again for the deleted {})", m.name, m.path);
  }
}

}  // namespace stasis::restore
