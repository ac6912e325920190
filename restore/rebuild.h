// Rebuilding each stub of the tree into its process, from outside with ptrace
// (docs/design.md, steps 4 to 7): seize every stub, put each in its process group, rebuild
// memory, threads, signals, credentials and registers process by process, and let them all
// go together at the end, so that the tree resumes as one.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "pstree.pb.h"

#include "common/ptrace.h"
#include "restore/core.h"
#include "restore/memory.h"
#include "restore/stub.h"
#include "restore/tree.h"

namespace stasis::restore {

struct ProcessRestore {
  const RestorePlan* plan = nullptr;
  pid_t host_pid = 0;
  uint64_t code_page = 0;
  std::optional<ptrace::SeizedThread> leader;
  std::vector<RestoredThread> threads;  // created by the rebuild, the leader not included
  MemoryStats memory;
  double memory_ms = 0;
};

// Rebuilds one seized stub into its process, up to its final registers; between phases
// check_interrupt may throw. The process stays in its ptrace-stop.
void rebuild_process(ProcessRestore& process, const std::function<void()>& check_interrupt);

// Lets every thread of every process go.
void let_go(std::vector<ProcessRestore>& processes);

// All of the above for the whole tree, its processes shared out between `workers` threads
// (ptrace requests come from the thread that seized: each worker seizes, rebuilds and at the
// end detaches its own share). Once every process is whole, whole() runs (on the calling
// thread), then every process is let go. The first failure of any worker is thrown, once
// every worker has stopped. Returns the processes' figures (their ptrace links gone).
std::vector<ProcessRestore> rebuild_tree(const RestoreTree& tree, const std::vector<StubReport>& reports,
                                         const std::map<pid_t, pid_t>& host_pids, unsigned workers,
                                         const std::function<void()>& check_interrupt,
                                         const std::function<void()>& whole);

}  // namespace stasis::restore
