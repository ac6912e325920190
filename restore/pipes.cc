#include "restore/pipes.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <span>
#include <string>

#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"

namespace stasis::restore {

void PipeFactory::put_back_data(uint64_t pipe_id, int write_fd) {
  auto data = images_.pipe_data.find(pipe_id);
  if (data != images_.pipe_data.end() && !data->second.empty())
    write_all(write_fd, std::as_bytes(std::span(data->second.data(), data->second.size())),
              "buffered data of pipe " + std::to_string(pipe_id));
}

namespace {

// A FIFO made anew where the removed one was (or beside it, if that name is taken now) with
// its mode and owner, opened for reading and writing, and removed again.
UniqueFd open_removed_fifo(const pb::PipeEnd& end) {
  std::string path = end.fifo_path();
  for (int attempt = 0;; ++attempt) {
    if (::mkfifo(path.c_str(), 0600) == 0) break;
    if (errno != EEXIST || attempt == 100) fail_errno(errno, "named FIFO {} (removed while open): make it again", path);
    path = fmt::format("{}.stasis-{}-{}", end.fifo_path(), ::getpid(), attempt);
  }
  UniqueFd fifo(::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
  const int err = errno;
  ::unlink(path.c_str());
  if (!fifo) fail_errno(err, "named FIFO {} (removed while open): open it again", path);
  if (::fchown(fifo.get(), end.fifo_uid(), end.fifo_gid()) < 0 || ::fchmod(fifo.get(), end.fifo_mode()) < 0)
    fail_errno(errno, "named FIFO {} (removed while open): set owner {}:{} and mode {:o}", end.fifo_path(),
               end.fifo_uid(), end.fifo_gid(), end.fifo_mode());
  return fifo;
}

}  // namespace

PipeFactory::Pipe& PipeFactory::fifo_for(const pb::PipeEnd& end) {
  const std::string& path = end.fifo_path();
  // Read and write: the open never waits for the other side, and the ends opened from it
  // never wait either (it is a reader and a writer of its own).
  UniqueFd fifo(end.fifo_removed() ? open_removed_fifo(end).release()
                                   : ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fifo) fail_errno(errno, "named FIFO {}: open it again", path);
  struct stat st {};
  if (::fstat(fifo.get(), &st) < 0 || !S_ISFIFO(st.st_mode)) fail("named FIFO {}: it is not a FIFO now", path);
  Pipe& pipe = pipes_[end.pipe_id()];
  pipe.fifo.reset(fcntl(fifo.get(), F_DUPFD_CLOEXEC, min_fd_));
  if (!pipe.fifo) fail_errno(errno, "named FIFO {}: move above fd {}", path, min_fd_);
  if (end.capacity() > 0 && fcntl(pipe.fifo.get(), F_SETPIPE_SZ, end.capacity()) < 0)
    fail_errno(errno, "named FIFO {}: set capacity {}", path, end.capacity());
  // Bytes in it already are another opener's (the original, left running): ours would come twice.
  int queued = 0;
  if (::ioctl(pipe.fifo.get(), FIONREAD, &queued) < 0) fail_errno(errno, "named FIFO {}: FIONREAD", path);
  if (queued == 0) put_back_data(end.pipe_id(), pipe.fifo.get());
  else if (images_.pipe_data.count(end.pipe_id()))
    log::warn("named FIFO {} holds {} bytes already (another process has it open): its dumped bytes are not "
              "written again",
              path, queued);
  return pipe;
}

PipeFactory::Pipe& PipeFactory::pipe_for(const pb::PipeEnd& end) {
  const uint64_t pipe_id = end.pipe_id();
  auto it = pipes_.find(pipe_id);
  if (it != pipes_.end()) return it->second;
  if (!end.fifo_path().empty()) return fifo_for(end);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) fail_errno(errno, "create pipe {}", pipe_id);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  Pipe& pipe = pipes_[pipe_id];
  pipe.read_end.reset(fcntl(fds[0], F_DUPFD_CLOEXEC, min_fd_));
  pipe.write_end.reset(fcntl(fds[1], F_DUPFD_CLOEXEC, min_fd_));
  if (!pipe.read_end || !pipe.write_end) fail_errno(errno, "pipe {}: move above fd {}", pipe_id, min_fd_);
  if (end.capacity() > 0 && fcntl(pipe.write_end.get(), F_SETPIPE_SZ, end.capacity()) < 0)
    fail_errno(errno, "pipe {}: set capacity {}", pipe_id, end.capacity());
  put_back_data(pipe_id, pipe.write_end.get());
  return pipe;
}

UniqueFd PipeFactory::open_end(uint64_t end_id) {
  auto it = images_.pipe_ends.find(end_id);
  if (it == images_.pipe_ends.end()) fail("pipes.img has no pipe end {}", end_id);
  const pb::PipeEnd& end = it->second;
  auto inherited = images_.inherited_pipes.find(end.pipe_id());
  if (inherited != images_.inherited_pipes.end()) {
    // --inherit-fd: the job's end is what the user gave; only O_NONBLOCK is the dump's.
    UniqueFd fd(fcntl(inherited->second, F_DUPFD_CLOEXEC, 0));
    if (!fd) fail_errno(errno, "pipe {}: dup the --inherit-fd source", end.pipe_id());
    const int flags = fcntl(fd.get(), F_GETFL);
    if (flags < 0 || fcntl(fd.get(), F_SETFL, (flags & ~O_NONBLOCK) | (end.flags() & O_NONBLOCK)) < 0)
      fail_errno(errno, "pipe {}: set O_NONBLOCK on the --inherit-fd source", end.pipe_id());
    return fd;
  }
  Pipe& pipe = pipe_for(end);
  if (pipe.fifo) {
    const std::string self = "/proc/self/fd/" + std::to_string(pipe.fifo.get());
    UniqueFd fd(::open(self.c_str(), static_cast<int>(end.flags() & O_ACCMODE) | O_NONBLOCK | O_CLOEXEC));
    if (!fd) fail_errno(errno, "named FIFO {}: open an end through {}", end.fifo_path(), self);
    if (fcntl(fd.get(), F_SETFL, end.flags() & O_NONBLOCK) < 0)
      fail_errno(errno, "named FIFO {}: set flags", end.fifo_path());
    return fd;
  }
  const bool reader = (end.flags() & O_ACCMODE) == O_RDONLY;
  UniqueFd& own = reader ? pipe.read_end : pipe.write_end;
  bool& used = reader ? pipe.read_used : pipe.write_used;
  UniqueFd fd;
  if (!used) {
    fd.reset(fcntl(own.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd) fail_errno(errno, "dup pipe {} end", end.pipe_id());
    used = true;
  } else {
    std::string self = "/proc/self/fd/" + std::to_string(own.get());
    fd.reset(::open(self.c_str(), (reader ? O_RDONLY : O_WRONLY) | O_CLOEXEC));
    if (!fd) fail_errno(errno, "reopen pipe {} end through {}", end.pipe_id(), self);
  }
  if (fcntl(fd.get(), F_SETFL, end.flags() & O_NONBLOCK) < 0) fail_errno(errno, "pipe {}: set flags", end.pipe_id());
  return fd;
}

}  // namespace stasis::restore
