// A process tree to restore: one RestorePlan per process (parents before children, as in
// pstree.img), and the open files that several processes share.
//
// How the tree is made (docs/design.md, "Process trees"): PID 1 of the new container (the
// root's stub, or our init when the root was not PID 1) lays out the stub's own fds and makes
// the job's mounts; then each stub, in its own process, becomes a session leader if its
// process was one, makes the shared open files it is the creator of (below), creates its
// children with clone3 set_tid (their PIDs, exit signals), and only then installs its own
// fd table, taking shared files from the fds it inherited, and closes the rest.
//
// Sharing: open files are grouped by what must come from one creation: the ends of one pipe,
// the open files of one deleted inode (ghost or memfd), else one open file id. A group whose
// fds are held by more than one process is made once, by the lowest common ancestor of its
// holders (or by our init for holders with no common ancestor in the tree), into a slot fd
// above every fd of the image (RestorePlan::shared_fd), which every process created after
// inherits across clone3; each holder dup3()s it into place. The kind does not matter: any
// FdEntry kind that FileOpener can open is shared this way.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <vector>

#include "files.pb.h"
#include "images/checkpoint.h"
#include "restore/files.h"
#include "restore/plan.h"

namespace stasis::restore {

inline constexpr int kInitProcess = -1;  // "no process of the tree": our init, PID 1

struct SharedFile {
  pb::FdEntry entry;  // kind and file id (fd: of its first holder, for messages)
  int creator = kInitProcess;  // index of the process that makes it
};

// A child that had exited and was not reaped: its parent's stub creates it last, and it exits
// at once with its status (restore/stub.cc).
struct Zombie {
  pb::TaskEntry entry;
  int parent = kInitProcess;
};

// Shared memory made once for the tree (a memfd, or MAP_SHARED anonymous memory), at
// shared_fd(shared.size() + j): every process that maps it maps that one object.
struct SharedMemory {
  MappedFile file;  // memfd or anon_shared, with its shmem_id
  uint64_t size = 0;
  int creator = kInitProcess;
  // A memfd also open as fds: the index in RestoreTree::shared of one of them (made by the
  // same creator just before), reopened for the mappings so that both are one memfd; or -1.
  int from_shared_file = -1;
};

struct RestoreTree {
  std::vector<RestorePlan> processes;  // parents before children
  std::vector<int> parent;             // index of each one's parent, or kInitProcess
  std::vector<Zombie> zombies;
  std::vector<SharedFile> shared;      // at RestorePlan::shared_fd(j) in every stub
  std::vector<SharedMemory> shared_memory;  // at shared_fd(shared.size() + j)
  std::vector<pb::TaskEntry> entries;  // pstree.img
  // A restore for runc of a job whose terminal was made outside it: PID 1 makes a new one in
  // the job's own devpts and sends its master on this socket (restore/terminals.h); -1: none.
  int terminal_socket = -1;

  bool own_pid_1() const { return processes.front().task.pid() == 1; }
  bool has_process(pid_t pid) const;  // a live process of the tree (not a zombie) has this pid
  std::vector<size_t> children_of(int index) const;  // kInitProcess: the roots
  // The fds a process takes from the slots: (kind, id) -> slot fd.
  SharedFds shared_fds() const;
  int top_fd() const;  // first fd above every stub fd of every process
};

// Loads every process's images into one plan each, sets the common fd layout (inherited:
// the number of --inherit-fd sources) and finds the shared open files.
RestoreTree load_tree(const images::Checkpoint& checkpoint, const FileImages& files, int inherited);

}  // namespace stasis::restore
