// Recreating pipes with their buffered data. Ends of one pipe share its pipe_id; every open
// file description of an end is one PipeEnd (its id). A named FIFO is opened again at its
// path (which must be a FIFO there), each end a new open of it, its bytes written back when
// it is empty.
#pragma once

#include <cstdint>
#include <map>

#include "common/fd.h"
#include "restore/file_images.h"

namespace stasis::restore {

class PipeFactory {
 public:
  // The factory's own pipe fds live at or above min_fd, clear of the fd numbers being installed.
  PipeFactory(const FileImages& images, int min_fd) : images_(images), min_fd_(min_fd) {}
  // The open file description for this PipeEnd id: the first end of each direction is the
  // pipe's own fd, later ones are reopened through /proc/self/fd (a new description).
  UniqueFd open_end(uint64_t end_id);

 private:
  struct Pipe {
    UniqueFd read_end, write_end;
    bool read_used = false, write_used = false;
    UniqueFd fifo;  // a named FIFO, opened for reading and writing: each end reopens it
  };
  Pipe& pipe_for(const pb::PipeEnd& end);
  Pipe& fifo_for(const pb::PipeEnd& end);
  void put_back_data(uint64_t pipe_id, int write_fd);

  const FileImages& images_;
  int min_fd_;
  std::map<uint64_t, Pipe> pipes_;
};

}  // namespace stasis::restore
