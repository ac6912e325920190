// The processes of a dump as one tree: the seized threads grouped by process, each with its
// ids inside the job's PID namespace (pid, parent, process group, session), parents before
// children; and the checks that refuse, before anything is saved, a tree that restore could
// not bring back as it was (a session or process group whose leader has exited, a zombie,
// memory or an epoll shared between processes). docs/dump.md, "Process trees".
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "core.pb.h"
#include "dump/task.h"
#include "files.pb.h"
#include "mm.pb.h"
#include "pstree.pb.h"
#include "signals.pb.h"

namespace stasis::dump {

// Everything the dump gathers about one process of the tree.
struct ProcessDump {
  Task task;
  pb::TaskCore core;
  pb::SignalState signals;
  std::vector<pb::FdEntry> fds;
  pb::MmState mm;
  uint64_t brk = 0;
  pb::MmAttributes mm_attributes;
  bool via_session_helper = false;  // pstree.proto
  std::vector<pid_t> group_stand_ins;  // pstree.proto
};

struct DumpTree {
  std::vector<ProcessDump> processes;        // parents before children; [0] is the root
  std::vector<ptrace::SeizedThread> others;  // seized but not dumped (the --init reaper)
  std::vector<pb::TaskEntry> zombies;        // exited children of the tree, not reaped yet
  std::vector<pid_t> host_pids() const;
  ProcessDump& root() { return processes.front(); }
  const ProcessDump& root() const { return processes.front(); }
};

// Groups the seized threads by process; the processes of `job` go into the tree (with their
// namespace ids, ppid 0 for a process whose parent is not in the tree), the others' threads
// into `others`. Throws when job is empty.
DumpTree build_tree(std::vector<ptrace::SeizedThread> all, const std::vector<pid_t>& job, const std::string& what);

// Records the zombie children of the tree's processes (their ids and exit status).
void find_zombies(DumpTree& tree);

// Marks the orphans of PID 1 whose session has lost its leader: restore makes the session
// again through a stand-in for the leader (via_session_helper).
void find_sessions_without_leader(DumpTree& tree);

// Finds the process groups whose leader has exited, with every member in one session that
// the parent of a member is in too: that parent's stand-in child remakes the group on restore
// (group_stand_ins). Others are left for check_tree_shape to refuse.
void find_groups_without_leader(DumpTree& tree);

// Refuses, naming pid and what, a tree restore cannot rebuild: a process whose session or
// process group leader has exited (or is outside the tree), a zombie in a group restore
// could not put it in. Called before anything is collected: the job is left running.
void check_tree_shape(const DumpTree& tree);

// After the fds and memory of every process are collected: refuses a memfd mapped by several
// processes that is also open as an fd, and an epoll held by several processes, which
// restore would bring back as copies.
void check_tree_sharing(const DumpTree& tree);

// The pstree.img records, parents first, zombies last.
std::vector<pb::TaskEntry> tree_entries(const DumpTree& tree);

}  // namespace stasis::dump
