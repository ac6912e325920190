// `stasis run --init`: a small PID 1 that runs the job as its child, forwards signals to it and
// reaps orphans re-parented to it (what docker --init / tini do).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <string>
#include <vector>

namespace stasis::launcher {

// Never returns normally: returns the job's status (code, or 128+signal) for PID 1 to exit with.
int run_reaper(const std::vector<std::string>& argv);

// The loop of an init: waits for signals (all of `blocked`, blocked by the caller before it
// created child), forwards every one but SIGCHLD to child and its process group, reaps
// whatever ends, and returns child's status (code, or 128+signal) once child has ended.
int forward_signals_and_reap(pid_t child, const sigset_t& blocked);

// execvp(argv); on failure prints "stasis run: cannot execute ..." and returns 127.
int exec_argv(const std::vector<std::string>& argv);

}  // namespace stasis::launcher
