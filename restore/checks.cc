#include "restore/checks.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>

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

void check_files_unchanged(const RestorePlan& plan, const std::filesystem::path& rootfs) {
  for (const auto& file : plan.mapped_files) {
    if (file.memfd) continue;  // made anew
    std::filesystem::path path = rootfs.empty() ? std::filesystem::path(file.path) : rootfs / file.path.substr(1);
    struct stat st;
    if (stat(path.c_str(), &st) < 0) fail_errno(errno, "file {} mapped by pid {}", path.string(), plan.task.pid());
    with_context(fmt::format("pid {}", plan.task.pid()), [&] { check_same_file(path.string(), st, file.identity); });
  }
}

}  // namespace stasis::restore
