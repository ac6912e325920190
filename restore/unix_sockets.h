// Recreating the job's unix sockets (unix-sockets.img) inside the stub, in the restored
// container's namespaces: names bound again (socket files with their mode and owner), pairs
// connected, accepted connections made again through their listener, pending ones put back in
// the accept queue, and every queue refilled by sending its data from the peer end, record by
// record, before the job runs.
#pragma once

#include <cstdint>
#include <map>

#include "common/fd.h"
#include "restore/file_images.h"

namespace stasis::restore {

class UnixSocketFactory {
 public:
  // The factory's own fds live at or above min_fd, clear of the fd numbers being installed.
  UnixSocketFactory(const FileImages& images, int min_fd) : images_(images), min_fd_(min_fd) {}
  // The open file description of this UnixSocket id. The first call builds every socket of
  // the image, as connections need both ends.
  UniqueFd open(uint64_t id);

 private:
  void build();
  int fd_of(uint32_t ino) const;
  void keep(uint32_t ino, int fd);  // moves fd above min_fd as socket ino

  const FileImages& images_;
  int min_fd_;
  bool built_ = false;
  std::map<uint32_t, UniqueFd> sockets_;  // by inode at the dump
};

}  // namespace stasis::restore
