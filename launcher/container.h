// The launcher's API: start a container (used by `stasis run` and by restore), wait for it,
// and manage it (kill, freeze, exec, rm). State lives in a StateStore (launcher/state_store.h).
//
// Process layout of a running container:
//   caller (stasis run / restore)
//     └─ monitor ("stasis-monitor", own session): parent of the job's PID 1, records its exit
//          └─ PID 1 of the new PID namespace: runs `init` (by default: exec of argv)
//
// Stdio of PID 1 (with -t: the pty slave, launcher/console.h; with -d -i: a pipe from the
// monitor): stdin is /dev/null when detached, else the caller's stdin; stdout and stderr
// go to config.log_path when set (opened O_APPEND by the caller, so an unwritable log fails
// early), else (foreground) to the caller's stdout/stderr. Detached containers without --log
// get ROOT/<name>.log, recorded in config.log_path. Other fds of the caller stay open in PID 1
// (the default init marks them close-on-exec before exec).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/cgroup.h"
#include "common/fd.h"
#include "container.pb.h"

namespace stasis::launcher {

// Runs inside the container's PID 1; its return value is PID 1's exit status.
using InitFunction = std::function<int()>;

struct StartedContainer {
  std::string name;
  pid_t init_pid = -1;     // host PID of the job's PID 1
  pid_t monitor_pid = -1;  // host PID of the monitor (a child of the caller)
  // Not detached: where the monitor says the job's status before it exits (wait_for_exit).
  std::shared_ptr<UniqueFd> exit_report;
  // -t in the foreground: the caller's connection to the job's terminal (launcher/console.h),
  // attached before the job ran.
  std::shared_ptr<UniqueFd> console;
};

// The init of `stasis run`: execs config.argv (through our reaper with config.init), printing
// "stasis run: cannot execute 'X': ..." and returning 127 when it cannot.
InitFunction exec_init(const pb::ContainerConfig& config);

// Validates config (UsageError for bad values; Error for a duplicate name or when not root),
// creates the cgroup, the state file and the monitor; the monitor forks PID 1 in fresh PID,
// mount, UTS, IPC, network (unless --net host) and cgroup namespaces. PID 1 sets up the cgroup
// membership, mounts (/ rslave, private /proc, pivot_root for rootfs), hostname, network,
// environment and working directory, then runs `init` (in a process forked from the caller,
// so its memory is the caller's; the caller, being root, may PTRACE_SEIZE it).
// Returns once PID 1 exists and the state says "running" with its init_pid. On any failure
// nothing is left behind (no cgroup, link, state file or process) and an Error is thrown.
// `mark`, when given, adds to the state before it is first written (restore records its
// checkpoint there, so that even a restore killed during the start is known as one).
// `before_network`, when given, runs in the monitor once PID 1's network namespace exists and
// before its links come up (--net veth, bridge), with PID 1's host pid (restore: the network
// lock of its TCP connections, launcher/net_lock.h).
StartedContainer start_container(const std::filesystem::path& root, pb::ContainerConfig config, InitFunction init,
                                 const std::function<void(pb::ContainerState&)>& mark = {},
                                 const std::function<void(pid_t)>& before_network = {});

// `stasis run`: start_container with exec_init. The default log (ROOT/NAME.log) starts empty.
// Detached, it returns only once the job's exec has happened: an exec failure throws Error
// "cannot execute 'X': ..." with exit code 127 (not found) or 126 (not executable), and
// nothing is left behind. In the foreground the job reports it (message, status 127/126).
StartedContainer run_container(const std::filesystem::path& root, pb::ContainerConfig config);

// Waits for the job to end and returns its status as a shell reports it (code, or 128+signal).
// The monitor says it once the job is gone and cleaned up after (--rm); reap_monitor then
// also waits for the monitor itself, which a caller about to exit need not do (init reaps
// it). Without that word, it reaps the monitor when it is the caller's child, otherwise polls
// the state.
int wait_for_exit(const std::filesystem::path& root, const StartedContainer& container, bool reap_monitor = true);

// Signal to PID 1 of a running (or frozen) container.
void kill_container(const std::filesystem::path& root, const std::string& name, int signal);
// Removes cgroup, network links, state and its default log (ROOT/NAME.log) unless keep_log. A
// running container is refused unless force, which kills every process of it first and waits
// (bounded) for its monitor to finish. keep_log (a dump removing the job it killed): the log
// stays for the restored job, and a container its --rm monitor removed already is no error.
void remove_container(const std::filesystem::path& root, const std::string& name, bool force, bool keep_log = false);
// `stasis stop`: SIGTERM to PID 1 (a frozen job is thawed to take it), then, if the job has
// not ended within `grace`, SIGKILL to every process of it. Returns once the job has ended
// (its exit recorded, or its state removed by --rm); at once when it had already ended.
// Throws Error when there is no such container or the job outlives the SIGKILL by 10 s.
void stop_container(const std::filesystem::path& root, const std::string& name, std::chrono::milliseconds grace);
// `stasis wait`: waits for the job to end and returns its status as a shell reports it (code,
// or 128+signal); at once when it has already ended. Throws Error when the container is
// removed before its exit could be read (--rm) or its monitor died without recording it.
int wait_container(const std::filesystem::path& root, const std::string& name);
void freeze_container(const std::filesystem::path& root, const std::string& name);
void thaw_container(const std::filesystem::path& root, const std::string& name);
// Runs argv inside the container (all its namespaces, its cgroup, its root); returns its status.
int exec_in_container(const std::filesystem::path& root, const std::string& name, const std::vector<std::string>& argv);

// The status a dump sets before it kills the job: the monitor, should it clean up (--rm), then
// keeps the log, which the restored container continues.
inline constexpr const char* kStatusDumped = "dumped";

// Sets state.status (e.g. kStatusDumped before dump kills the job, "running" after restore).
void set_container_status(const std::filesystem::path& root, const std::string& name, const std::string& status);

Cgroup open_cgroup(const pb::ContainerState& state);

// "running", "frozen", "exited (0)", "killed (SIGKILL)", "oom-killed", "created", ...: what ps
// shows, checked against the live system (a frozen cgroup, a vanished monitor).
std::string display_status(const pb::ContainerState& state);
// The state as `inspect` and `ps --json` print it: name and display_status filled in.
pb::ContainerState state_for_display(pb::ContainerState state);
// True when the monitor or PID 1 of this state still exists (PID 1 checked by its PID-namespace
// inode, so a reused PID does not count).
bool container_alive(const pb::ContainerState& state);

// "KILL", "SIGKILL", "9" -> 9; throws UsageError.
int parse_signal(const std::string& text);
std::string signal_name(int signal);  // "SIGKILL"

// Throws Error unless running as root.
void require_root(const std::string& what);

}  // namespace stasis::launcher
