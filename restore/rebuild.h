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

// Seizes every stub (reports: what each said; host_pids: namespace pid -> host pid).
std::vector<ProcessRestore> seize_stubs(const RestoreTree& tree, const std::vector<StubReport>& reports,
                                        const std::map<pid_t, pid_t>& host_pids);

// Process groups: leaders first, then their members (setpgid injected into each, which must
// be in the same session as the group; the stubs made the sessions).
void set_process_groups(std::vector<ProcessRestore>& processes, const std::vector<Zombie>& zombies);

// Rebuilds one seized stub into its process, up to its final registers; between phases
// check_interrupt may throw. The process stays in its ptrace-stop.
void rebuild_process(ProcessRestore& process, const std::function<void()>& check_interrupt);

// Lets every thread of every process go.
void let_go(std::vector<ProcessRestore>& processes);

}  // namespace stasis::restore
