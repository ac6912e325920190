#include "restore/file_locks.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/syscall.h>

#include "common/error.h"

namespace stasis::restore {

namespace {

std::string describe(const pb::FdEntry& fd, const pb::FileLock& lock) {
  const char* kind = lock.kind() == pb::FileLock::FLOCK ? "flock" : lock.kind() == pb::FileLock::POSIX ? "POSIX" : "OFD";
  return fmt::format("fd {}: {} {} lock", fd.fd(), kind, lock.write() ? "write" : "read");
}

void take(Remote& r, const pb::FdEntry& fd, const pb::FileLock& lock) {
  long rc = 0;
  if (lock.kind() == pb::FileLock::FLOCK) {
    rc = r.call(SYS_flock, static_cast<uint64_t>(fd.fd()), (lock.write() ? LOCK_EX : LOCK_SH) | LOCK_NB);
  } else {
    struct flock fl {};
    fl.l_type = lock.write() ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(lock.start());
    fl.l_len = static_cast<off_t>(lock.length());
    const int cmd = lock.kind() == pb::FileLock::POSIX ? F_SETLK : F_OFD_SETLK;
    rc = r.call(SYS_fcntl, static_cast<uint64_t>(fd.fd()), static_cast<uint64_t>(cmd), r.put_scratch(&fl, sizeof fl));
  }
  if (rc == -EAGAIN || rc == -EWOULDBLOCK || rc == -EACCES)
    fail("{}: another process holds a conflicting lock (is the original job still running?)", describe(fd, lock));
  if (rc < 0) fail("{}: {}", describe(fd, lock), describe_errno(static_cast<int>(-rc)));
}

}  // namespace

void restore_file_locks(Remote& leader, const std::vector<pb::FdEntry>& fds) {
  for (const auto& fd : fds)
    for (const auto& lock : fd.locks()) take(leader, fd, lock);
}

}  // namespace stasis::restore
