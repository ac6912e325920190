#include "restore/pipes.h"

#include <fcntl.h>
#include <unistd.h>

#include <span>
#include <string>

#include "common/error.h"
#include "common/file_util.h"

namespace stasis::restore {

PipeFactory::Pipe& PipeFactory::pipe_for(uint64_t pipe_id, uint32_t capacity) {
  auto it = pipes_.find(pipe_id);
  if (it != pipes_.end()) return it->second;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) fail_errno(errno, "create pipe {}", pipe_id);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  Pipe& pipe = pipes_[pipe_id];
  pipe.read_end.reset(fcntl(fds[0], F_DUPFD_CLOEXEC, min_fd_));
  pipe.write_end.reset(fcntl(fds[1], F_DUPFD_CLOEXEC, min_fd_));
  if (!pipe.read_end || !pipe.write_end) fail_errno(errno, "pipe {}: move above fd {}", pipe_id, min_fd_);
  fds[0] = pipe.read_end.get();
  fds[1] = pipe.write_end.get();
  if (capacity > 0 && fcntl(fds[1], F_SETPIPE_SZ, capacity) < 0)
    fail_errno(errno, "pipe {}: set capacity {}", pipe_id, capacity);
  auto data = images_.pipe_data.find(pipe_id);
  if (data != images_.pipe_data.end() && !data->second.empty())
    write_all(fds[1], std::as_bytes(std::span(data->second.data(), data->second.size())),
              "buffered data of pipe " + std::to_string(pipe_id));
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
  Pipe& pipe = pipe_for(end.pipe_id(), end.capacity());
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
