// Runs code inside another process's namespaces without moving the caller: a helper thread
// setns()es into them (that changes the thread alone) and runs the function there. Calls that
// act on "the caller's namespace" then act on the target's: System V IPC, mq_open, fsopen of
// an mqueue fs, the per-namespace files under /proc/sys, sethostname.
#pragma once

#include <sys/types.h>

#include <functional>
#include <initializer_list>
#include <string_view>

namespace stasis {

// kinds are names under /proc/PID/ns ("ipc", "uts"); only kinds a thread may join alone
// (not "mnt", "user", "pid"). Exceptions thrown by fn come back to the caller.
void run_in_namespaces(pid_t pid, std::initializer_list<std::string_view> kinds, const std::function<void()>& fn);

// Runs fn on a helper thread that has just unshare()d the given CLONE_NEW* flags (a fresh IPC
// namespace shows the defaults of its sysctls).
void run_in_fresh_namespaces(int clone_flags, const std::function<void()>& fn);

}  // namespace stasis
