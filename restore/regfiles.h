// Reopening regular files and directories, and making again those deleted while open
// ("ghosts"): each deleted inode is made once, with its data, holes, owner, mode and times,
// under its old name when that is free (else a name of ours beside it), opened by every open
// file description that had it (under each of its hard-linked names), and removed again.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/fd.h"
#include "regfile.pb.h"
#include "restore/file_images.h"

namespace stasis::restore {

class GhostFiles {
 public:
  // Fds kept by us go at or above private_fd_base, clear of the fd numbers being installed.
  GhostFiles(const FileImages& images, int private_fd_base) : images_(images), private_fd_base_(private_fd_base) {}
  ~GhostFiles();  // removes every name still there (a failed restore leaves none behind)
  GhostFiles(const GhostFiles&) = delete;
  GhostFiles& operator=(const GhostFiles&) = delete;

  // A new open file description of `file`, at its offset; a file reopened by path must still
  // be the dumped one (restore/checks.h) unless accepted as changed.
  UniqueFd open(const pb::RegFile& file);
  // Enters the deleted working directory `file` (a RegFile with cwd set).
  void enter_cwd(const pb::RegFile& file);
  // Removes every ghost's names: from now on they are deleted again, as when dumped.
  void remove_names();

 private:
  struct Made {
    uint64_t inode_id;  // id of the first RegFile of the inode
    std::string path;   // the dumped path it stands for
    std::string name;   // the name it has now
    bool directory;
    bool created_parent;  // a missing parent directory we made for it (removed after)
  };
  // Makes the ghost directories, before any ghost that may lie in them.
  void prepare();
  // The first RegFile of file's inode (file itself, or the one it names in same_inode_as).
  const pb::RegFile& first_of(const pb::RegFile& file) const;
  UniqueFd open_ghost(const pb::RegFile& file);
  UniqueFd open_memfd(const pb::RegFile& file);
  // The name the ghost of inode_id has for path, made (with its data) if it has none yet.
  std::string name_for(const pb::RegFile& first, const std::string& path);
  // path with the dumped directories that are ghosts now replaced by their current names.
  std::string translate(const std::string& path) const;
  void make_parents(const std::string& path);

  const FileImages& images_;
  int private_fd_base_;
  bool prepared_ = false;
  std::vector<Made> made_;  // in creation order; removed in reverse
  std::vector<std::pair<uint64_t, int>> memfds_;  // inode id -> our fd of the memfd made
  std::vector<UniqueFd> memfd_fds_;
};

}  // namespace stasis::restore
