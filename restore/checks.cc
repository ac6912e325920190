#include "restore/checks.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include <fcntl.h>

#include <set>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "images/host_info.h"
#include "restore/memory.h"

namespace stasis::restore {

void check_host_compatible(const images::Checkpoint& checkpoint, const RestorePlan& plan) {
  const auto& inv = checkpoint.inventory();
  utsname uts;
  uname(&uts);
  if (inv.machine() != uts.machine)
    throw UnsupportedError(fmt::format("{}: dumped on {}, this machine is {}", checkpoint.dir().string(),
                                       inv.machine(), uts.machine));
  const uint64_t ours = images::xsave_features();
  if (inv.xsave_features() & ~ours)
    throw UnsupportedError(fmt::format(
        "{}: the dumping CPU had XSAVE features {:#x}, this one lacks {:#x}: its registers cannot be restored here",
        checkpoint.dir().string(), inv.xsave_features(), inv.xsave_features() & ~ours));
  if (inv.kernel_release() != uts.release)
    log::warn("{}: dumped on kernel {}, restoring on {}", checkpoint.dir().string(), inv.kernel_release(),
              uts.release);
  check_vdso_compatible(plan.task.mm);
  for (const auto& limit : plan.task.core.rlimits()) {
    rlimit current;
    if (getrlimit(static_cast<__rlimit_resource>(limit.resource()), &current) == 0 && limit.max() > current.rlim_max)
      log::warn("pid {}: rlimit {} hard limit {} is above ours ({}); without CAP_SYS_RESOURCE it is restored as {}",
                plan.task.pid(), limit.resource(), limit.max(), current.rlim_max, current.rlim_max);
  }
}

void check_same_file(const std::string& path, const struct stat& st, const pb::FileIdentity& identity) {
  const int64_t mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  if (static_cast<uint64_t>(st.st_size) != identity.size() || mtime_ns != identity.mtime_ns())
    fail("file {} changed since the dump (size {} -> {}, mtime {} -> {})", path, identity.size(), st.st_size,
         identity.mtime_ns(), mtime_ns);
}

std::string regfile_change(const pb::RegFile& file, const struct stat& st, const std::string& boot_id) {
  const pb::FileIdentity& was = file.file();
  if ((st.st_mode & S_IFMT) != (file.mode() & S_IFMT))
    return S_ISDIR(file.mode()) ? "no longer a directory" : "no longer a regular file";
  // A directory holds no data at an offset, its size and mtime change with its entries, and
  // some are new mounts in every container (/dev, /dev/shm): its type is all that matters.
  if (S_ISDIR(st.st_mode)) return "";
  std::vector<std::string> changes;
  // Inode numbers mean something only in the boot that dumped.
  if (!boot_id.empty() && file.boot_id() == boot_id && (st.st_dev != was.dev() || st.st_ino != was.ino()))
    changes.push_back(fmt::format("another file now: inode {} -> {}", was.ino(), st.st_ino));
  {
    const int64_t mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    // Appends go to the end whatever the offset: a log that others appended to is fine, one
    // that shrank was truncated or rotated.
    const bool appends = (file.flags() & O_APPEND) && (file.flags() & O_ACCMODE) != O_RDONLY;
    if (appends ? size < was.size() : size != was.size())
      changes.push_back(fmt::format("size {} -> {}", was.size(), size));
    if (!appends && mtime_ns != was.mtime_ns()) changes.push_back(fmt::format("mtime {} -> {}", was.mtime_ns(), mtime_ns));
  }
  std::string out;
  for (const auto& c : changes) out += (out.empty() ? "" : ", ") + c;
  return out;
}

void check_open_files(RestorePlan& plan, const std::filesystem::path& rootfs,
                      const std::vector<std::string>& allow_changed) {
  std::set<std::string> allowed(allow_changed.begin(), allow_changed.end());
  std::set<std::string> used;
  for (const auto& [id, file] : plan.files.regfiles) {
    if (file.deleted() || file.memfd() || file.cwd()) continue;  // made anew
    if (file.kernel_fs()) continue;  // a view of kernel state, reopened in the new container
    // Only a directory's type matters (regfile_change), checked once open: some are mounts
    // made anew in the container (/dev/shm), out of our sight from here.
    if (S_ISDIR(file.mode())) continue;
    std::string where = fmt::format("pid {}", plan.task.pid());
    for (const auto& e : plan.task.fds)
      if ((e.kind() == pb::FdEntry::REGULAR || e.kind() == pb::FdEntry::DIRECTORY) && e.file_id() == id) {
        where += fmt::format(" fd {}", e.fd());
        break;
      }
    const std::filesystem::path path = path_on_host(plan.mounts, rootfs, file.path());
    if (path.empty()) continue;  // on a mount the stub makes anew
    struct stat st;
    if (stat(path.c_str(), &st) < 0) fail_errno(errno, "{}: reopen file {}", where, path.string());
    const std::string change = regfile_change(file, st, plan.files.boot_id);
    if (change.empty()) continue;
    if ((st.st_mode & S_IFMT) != (file.mode() & S_IFMT))  // no option makes a directory a file
      throw Error(fmt::format("{}: {} is {}", where, path.string(), change));
    if (!allowed.count(file.path()))
      throw Error(fmt::format("{}: file {} changed since the dump ({}): it may have been rotated, replaced or "
                              "written by another process; restore with --allow-changed-file {} to reopen it as it "
                              "is now, at offset {}",
                              where, path.string(), change, file.path(), file.pos()));
    log::warn("{}: file {} changed since the dump ({}); reopened as it is now, at offset {} (--allow-changed-file)",
              where, path.string(), change, file.pos());
    plan.files.changed_ok.insert(id);
    used.insert(file.path());
  }
  for (const auto& path : allowed)
    if (!used.count(path)) log::warn("--allow-changed-file {}: no open file of the checkpoint changed there", path);
}

void check_files_unchanged(const RestorePlan& plan, const std::filesystem::path& rootfs) {
  for (const auto& file : plan.mapped_files) {
    if (file.memfd || file.anon_shared) continue;  // made anew
    const std::filesystem::path path = path_on_host(plan.mounts, rootfs, file.path);
    if (path.empty()) continue;  // on a mount the stub makes anew
    struct stat st;
    if (stat(path.c_str(), &st) < 0) fail_errno(errno, "file {} mapped by pid {}", path.string(), plan.task.pid());
    with_context(fmt::format("pid {}", plan.task.pid()), [&] { check_same_file(path.string(), st, file.identity); });
  }
}

}  // namespace stasis::restore
