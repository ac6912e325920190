// Installing a process's fd table, inside the stub before its address space is replaced.
#pragma once

#include <array>
#include <string>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "common/fd.h"
#include "files.pb.h"
#include "restore/file_images.h"
#include "restore/pipes.h"
#include "restore/regfiles.h"
#include "restore/terminals.h"
#include "restore/unix_sockets.h"

namespace stasis::restore {

// The highest fd number the table uses (-1 for an empty table).
int max_fd(const std::vector<pb::FdEntry>& fds);

// Installs every FdEntry at its number with its close-on-exec flag. stdio[k] is the stub's
// original standard fd k (kept at a high number): INHERITED entries are wired to it, so the
// restored job talks to the new monitor as it did to the old one. Fds in keep (the stub's
// own) are left alone; every other fd is closed. A deleted working directory is entered
// (as a ghost, restore/regfiles.h); the path of any other is left to apply_process_attributes.
// shared: open files another process of the tree made, by (kind, file id), at the fds this
// process inherited them at (restore/tree.h); their entries are dup'd from there.
using SharedFds = std::map<std::pair<int, uint64_t>, int>;
void install_fd_table(pid_t pid, const std::vector<pb::FdEntry>& fds, const FileImages& images,
                      const std::array<int, 3>& stdio, const std::vector<int>& keep, const SharedFds& shared = {},
                      const std::string& cwd = "");

// Makes the open file description of an FdEntry (its kind and file id) anew, at any free fd.
// Pipes are made whole with their buffered bytes when a first end is asked for; ghosts keep
// their names until remove_ghost_names(). min_fd: where the factories keep their own fds.
class FileOpener {
 public:
  FileOpener(const FileImages& images, const std::array<int, 3>& stdio, int min_fd);
  ~FileOpener();
  UniqueFd open(const pb::FdEntry& entry);
  // The deleted working directory at path cwd (as /proc/PID/cwd showed it; "": any), entered
  // as a ghost.
  void enter_cwd(const std::string& cwd);
  void remove_ghost_names();
  // Once every fd it opened is in place: the bytes waiting in each pty pair go back, locked
  // pairs are locked again.
  void finish_ptys();

 private:
  const FileImages& images_;
  std::array<int, 3> stdio_;
  PipeFactory pipes_;
  GhostFiles ghosts_;
  UnixSocketFactory unix_sockets_;
  PtyFactory ptys_;
};

}  // namespace stasis::restore
