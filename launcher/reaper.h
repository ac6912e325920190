// `stasis run --init`: a small PID 1 that runs the job as its child, forwards signals to it and
// reaps orphans re-parented to it (what docker --init / tini do).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <string>
#include <vector>

namespace stasis::launcher {

// Never returns normally: returns the job's status (code, or 128+signal) for PID 1 to exit with.
// exec_report: see exec_argv; the job's exec reports there, and the reaper lets go of its copy.
int run_reaper(const std::vector<std::string>& argv, int exec_report = -1);

// The loop of an init: waits for signals (all of `blocked`, blocked by the caller before it
// created child), forwards every one but SIGCHLD to child and its process group, reaps
// whatever ends, and returns child's status (code, or 128+signal) once child has ended.
int forward_signals_and_reap(pid_t child, const sigset_t& blocked);

// What a shell returns when a command cannot be run: not found, or found but not executable.
constexpr int kExitCommandNotFound = 127;
constexpr int kExitNotExecutable = 126;
int exec_failure_status(int err);  // 127 for ENOENT/ENOTDIR, else 126

// execvp(argv); on failure prints "stasis run: cannot execute ..." and returns
// exec_failure_status. exec_report (>= 0): a close-on-exec pipe whose reader learns of the
// failure ("X<errno>\n"); a successful exec closes it, so its end of file means "it runs".
int exec_argv(const std::vector<std::string>& argv, int exec_report = -1);

}  // namespace stasis::launcher
