// What the restorer knows before it starts anything: the loaded images, and the fd numbers
// the stub keeps for itself while it rebuilds the process (above every fd of the image).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "images/page_chain.h"
#include "images/page_file.h"
#include "mm.pb.h"
#include "restore/file_images.h"
#include "restore/mounts.h"
#include "restore/task_image.h"

namespace stasis::restore {

// A file the target maps (or runs as /proc/PID/exe); the stub opens it and checks it is
// still the file that was dumped.
struct MappedFile {
  std::string path;
  pb::FileIdentity identity;
  bool writable = false;  // a shared writable mapping needs O_RDWR
  // A memfd the target maps: the stub makes one (or uses the restored fd of the same memfd).
  bool memfd = false;
  std::string memfd_name;
  uint64_t memfd_size = 0;
  uint32_t memfd_seals = 0;
  uint32_t memfd_mode = 0;  // st_mode, 0 in images from before it was saved
  uint32_t memfd_uid = 0, memfd_gid = 0;
  uint64_t shmem_id = 0;  // its inode when dumped
  // MAP_SHARED|MAP_ANONYMOUS memory ("/dev/zero (deleted)") mapped through this fd because it
  // is shared with another process or VMA (restore/tree.h); shmem_id says which.
  bool anon_shared = false;
  // Made once for the tree and taken from RestorePlan::shared_fd(shared_slot), or -1.
  int shared_slot = -1;
};

struct RestorePlan {
  std::filesystem::path dir;
  TaskImage task;  // one process of the tree
  FileImages files;
  std::vector<MappedFile> mapped_files;  // distinct paths of file mappings, then the exe last
  int high_fd_base = 0;
  // --inherit-fd sources: their fds in the restorer (above every fd of the stub's own), which
  // the stub moves to inherited_fd(i).
  std::vector<int> inherited_source_fds;
  // The task's page file, its chunk headers checked against the inventory before anything
  // starts; the fill checks each chunk's data as it goes in (restore/page_fill.h).
  std::shared_ptr<const images::PageReader> pages;
  // Of an incremental checkpoint: the pages its parents hold, nearest first (images/page_chain.h).
  std::vector<images::ParentPages> parent_pages;
  MountPlan mounts;  // the job's own mounts, made by the stub first (restore/mounts.h)

  // The stub's own fds, all at or above high_fd_base, laid out alike in every process of a
  // tree (restore/tree.h): its children inherit them across clone3.
  int inherited_count = 0;  // --inherit-fd sources
  int shared_count = 0;     // open files shared between processes (RestoreTree::shared)
  int stdio_copy_fd(int k) const { return high_fd_base + k; }
  int control_fd() const { return high_fd_base + 3; }
  int inherited_fd(size_t index) const { return high_fd_base + 4 + static_cast<int>(index); }
  int shared_fd(size_t index) const { return high_fd_base + 4 + inherited_count + static_cast<int>(index); }
  int mapped_file_fd(size_t index) const { return shared_fd(static_cast<size_t>(shared_count)) + static_cast<int>(index); }
  int exe_fd() const { return mapped_file_fd(mapped_files.size() - 1); }
  int top_fd() const { return mapped_file_fd(mapped_files.size()); }  // first fd above all of the stub's
  int path_fd_index(const std::string& path) const;  // index in mapped_files, or throws
  int memfd_index(uint64_t shmem_id) const;          // index in mapped_files, or throws
  int anon_shared_index(uint64_t shmem_id) const;    // index in mapped_files, or -1
  const pb::SignalState& signals() const { return task.signals; }
};

RestorePlan make_plan(const std::filesystem::path& dir, TaskImage task, FileImages files);

}  // namespace stasis::restore
