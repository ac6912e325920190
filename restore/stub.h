// The stub: the process that becomes the restored one. It is forked from the restorer inside
// the new container, so it already holds the loaded images. On itself, in plain C++, it opens
// the files and sets what needs no special address space (fd table, cwd, umask, signal
// handlers, rlimits); then it maps our code page, reports to the restorer through the control
// pipe, and waits, all signals blocked, to be taken over with ptrace.
#pragma once

#include <cstdint>
#include <string>

#include <vector>

#include "restore/tree.h"

namespace stasis::restore {

// What a stub tells the restorer: one write, smaller than PIPE_BUF so it is atomic (all the
// stubs of a tree write to one control pipe).
struct StubReport {
  int32_t ok = 0;
  int32_t pid = 0;  // the process's pid in its namespace
  uint64_t code_page = 0;
  char error[1024] = {};
};

// In PID 1 of the new container, first: moves the control pipe and copies of the standard
// fds (and the --inherit-fd sources) to the stubs' own fd numbers, closes everything else
// (keep_stdio: but fds 0-2, for our init) and makes the job's mounts.
void prepare_container(const RestoreTree& tree, int control_fd, bool keep_stdio);

// Makes the shared open files whose creator is `parent` (an index, or kInitProcess) and
// creates its children, each running run_stub.
void start_processes(const RestoreTree& tree, int parent, int control_fd);

// Never returns: becomes process `index` of the tree (and creates its children), reports,
// and waits to be seized. control_fd: the write end of the control pipe.
[[noreturn]] void run_stub(const RestoreTree& tree, size_t index, int control_fd);

// A failure report for pid (from init, when a stub could not even start).
void report_failure(int control_fd, pid_t pid, const std::string& what);

// In the restorer: waits (bounded) for `count` reports; throws with the first stub's error.
std::vector<StubReport> read_stub_reports(int control_fd, pid_t init_host_pid, size_t count, int timeout_ms);

}  // namespace stasis::restore
