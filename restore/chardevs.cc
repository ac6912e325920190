#include "restore/chardevs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/error.h"

namespace stasis::restore {

UniqueFd open_chardev(const pb::CharDev& dev) {
  int fd = ::open(dev.path().c_str(), (dev.flags() & ~(O_CREAT | O_EXCL | O_TRUNC)) | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) fail_errno(errno, "reopen device {}", dev.path());
  UniqueFd out(fd);
  struct stat st;
  if (fstat(fd, &st) < 0) fail_errno(errno, "stat device {}", dev.path());
  if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != dev.rdev_major() || minor(st.st_rdev) != dev.rdev_minor())
    fail("device {} is not the character device {}:{} it was at dump time", dev.path(), dev.rdev_major(),
         dev.rdev_minor());
  if (dev.pos() != 0) ::lseek(fd, static_cast<off_t>(dev.pos()), SEEK_SET);  // most devices ignore offsets
  return out;
}

}  // namespace stasis::restore
