// The checkpoint harness: runs workloads (tests/workloads, see docs/testing.md) in containers
// or as plain host processes, dumps and restores them with the `stasis` binary, and watches
// their status files. Every process and container it starts is removed by its destructor,
// by name and then by PID, even when an assertion fails half way.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/test_util.h"

namespace stasis::test {

using namespace std::chrono_literals;

// What a workload's status file says right now.
struct WorkloadStatus {
  enum class Kind { kMissing, kOk, kFail };  // kMissing: no file, empty or half-written
  Kind kind = Kind::kMissing;
  std::uint64_t progress = 0;  // for kOk
  std::string reason;          // for kFail
  std::string raw;             // the file's text, for messages
};
WorkloadStatus read_status(const std::filesystem::path& path);
// Empties the status file (without removing it), so that the next "ok" is a fresh write.
void clear_status(const std::filesystem::path& path);
// Restore options for a job whose status files changed since the dump, which it may have had
// open at the freeze (STATUS.tmp, renamed over STATUS; bash writes STATUS in place): rewritten
// by the original left running or by another copy restored before, or emptied by the test.
// Restore reopens them as they are now.
std::vector<std::string> accept_rewritten_status(const std::filesystem::path& status);

// How to start one workload: argv = program + {status path} + args.
struct Workload {
  std::string name;                      // for messages and container names
  std::vector<std::string> program;      // e.g. {build/tests/workloads/counter}
  std::vector<std::string> args;         // after the status path
  std::chrono::milliseconds start_timeout = 20s;  // until the first "ok"
  std::chrono::milliseconds watch = 1500ms;       // how long to watch after a restore
  std::vector<std::string> argv(const std::filesystem::path& status) const;
};
// A compiled workload from build/tests/workloads.
Workload c_workload(const std::string& name, std::vector<std::string> args = {});
// tests/workloads/py_counter.py under python3, tests/workloads/bash_loop.sh under bash.
Workload python_workload();
Workload bash_workload();

// Waits until the status says "ok P" with P > beyond. Fails at once on "FAIL <reason>" (the
// reason is in the message) and on an "ok P" with P < at_least (a counter that restarted),
// or after timeout. On success *progress (if given) is P.
::testing::AssertionResult wait_for_progress(const std::filesystem::path& status, std::uint64_t beyond,
                                             std::chrono::milliseconds timeout = 20s,
                                             std::uint64_t* progress = nullptr, std::uint64_t at_least = 0);
// Watches the status for `duration`: it must never say FAIL or go backwards, and must have
// risen by the end. *progress gets the last value.
::testing::AssertionResult keep_progressing(const std::filesystem::path& status, std::chrono::milliseconds duration,
                                            std::uint64_t* progress = nullptr);

// The NSpid line of /proc/PID/status: the PID in each namespace, outermost first.
std::vector<pid_t> namespace_pids(pid_t host_pid);
// The innermost PID of a host process (last NSpid field), or nullopt.
std::optional<pid_t> namespace_pid(pid_t host_pid);
// The namespace of a host process, e.g. "pid:[4026531836]" for kind "pid", or "".
std::string namespace_id(pid_t pid, const std::string& kind);
// True while /proc/PID exists and is not a zombie.
bool process_alive(pid_t pid);
// Voluntary plus involuntary context switches of a host process (all threads), or -1.
long long context_switches(pid_t pid);

// One state root and one work folder (status files, images) for a test; both are removed
// at the end. Containers and host processes below refer to it.
class CheckpointEnv {
 public:
  CheckpointEnv();
  const std::filesystem::path& root() const { return root_.path(); }
  const std::filesystem::path& work() const { return work_.path(); }
  std::filesystem::path status_path(const std::string& label) const;  // work/<label>.status
  std::filesystem::path image_dir(const std::string& label) const;    // work/images-<label>, created
  // `stasis --root ROOT args...`
  CommandResult stasis(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 60s) const;
  // `stasis dump --pid PID -D dir [options]` for a host process.
  ::testing::AssertionResult dump_pid(pid_t pid, const std::filesystem::path& dir,
                                      const std::vector<std::string>& options = {},
                                      std::chrono::milliseconds timeout = 120s) const;
  // `stasis --root ROOT args...` in the background, with STASIS_FAULT=fault and
  // STASIS_FAULT_PAUSE=pause (common/fault.h: it waits at that point while `pause` exists),
  // its output going to log. The returned process is the caller's to reap (or kill).
  pid_t start_paused(const std::vector<std::string>& args, const std::string& fault,
                     const std::filesystem::path& pause, const std::filesystem::path& log) const;
  // A container name unique in this test run.
  std::string unique_name(const std::string& base);

 private:
  TempDir root_{"stasis-root"};
  TempDir work_{"stasis-work"};
  int next_ = 0;
};

// A container known to the harness by name. Nothing runs until run() or restore(); the
// destructor runs `stasis rm -f NAME`, kills the host PID it saw if still alive, and then
// any process whose command line holds its status path or name (what a half-failed run or
// restore leaves behind; note that copies restored from one image share the status path).
class Container {
 public:
  Container(CheckpointEnv& env, const std::string& base_name);
  ~Container();
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;

  const std::string& name() const { return name_; }
  const std::filesystem::path& status() const { return status_; }

  // `stasis run -d --name NAME [options] -- workload STATUS args`, then waits for "ok".
  ::testing::AssertionResult run(const Workload& w, const std::vector<std::string>& options = {});
  // `stasis dump NAME -D dir [options]`.
  ::testing::AssertionResult dump(const std::filesystem::path& dir, const std::vector<std::string>& options = {},
                                  std::chrono::milliseconds timeout = 120s);
  // `stasis restore -D dir --name NAME -d [options]`; status() becomes `status`, the path the
  // restored workload writes to (the one it was started with).
  ::testing::AssertionResult restore(const std::filesystem::path& dir, const std::filesystem::path& status,
                                     const std::vector<std::string>& options = {},
                                     std::chrono::milliseconds timeout = 120s);
  // What the last run/dump/restore printed (stdout, then stderr).
  const std::string& last_output() const { return last_output_; }
  // The host PID of the container's PID 1 from `stasis ps --json` (remembered for cleanup).
  std::optional<pid_t> host_pid();
  // Its cgroup folder for a controller ("memory", "pids", ... or "unified"), from ps --json.
  std::optional<std::string> cgroup_path(const std::string& controller);
  // Waits until the container's process is gone (ps does not show it running and its last
  // seen PID has exited).
  ::testing::AssertionResult wait_gone(std::chrono::milliseconds timeout = 20s);
  // `stasis rm -f NAME` and the PID fallback; safe to call twice.
  void remove();

 private:
  CheckpointEnv& env_;
  std::string name_;
  std::filesystem::path status_;
  std::string last_output_;
  pid_t pid_ = -1;                 // last host PID seen, for cleanup
  unsigned long long start_time_ = 0;  // its start time (field 22 of stat), against PID reuse
  bool started_ = false;
};

// A workload run as a plain child of the test (fork/exec, its own session), for
// `stasis dump --pid`. stdout/stderr go to a log next to the status file.
class HostProcess {
 public:
  HostProcess() = default;
  ~HostProcess();
  HostProcess(const HostProcess&) = delete;
  HostProcess& operator=(const HostProcess&) = delete;

  // Starts it and waits for its first "ok".
  ::testing::AssertionResult start(const Workload& w, const std::filesystem::path& status,
                                   std::chrono::milliseconds first_ok_timeout = 20s);
  pid_t pid() const { return pid_; }
  const std::filesystem::path& status() const { return status_; }
  // Reaps it if it exited; true while it runs.
  bool running();
  // Waits until it exits (and reaps it).
  bool wait_exit(std::chrono::milliseconds timeout);
  // SIGKILL and reap; safe to call twice.
  void kill();
  std::string log_tail() const;

 private:
  pid_t pid_ = -1;
  bool reaped_ = true;
  std::filesystem::path status_;
  std::filesystem::path log_;
};

// The common scenario, for one workload in a container:
//   run, wait for "ok N", dump (with --leave-running if asked: the original must keep
//   progressing and is then removed; otherwise the original must be gone), restore under a
//   new name, and check that progress continues beyond N (never restarting) without FAIL
//   for the workload's watch time. Uses gtest assertions: wrap in ASSERT_NO_FATAL_FAILURE.
struct RoundTrip {
  bool leave_running = false;
  std::vector<std::string> run_options;
  std::vector<std::string> dump_options;
  std::vector<std::string> restore_options;
  // Runs on the original, running, just before the dump.
  std::function<void(Container& original)> before_dump;
  // Extra checks on the restored container while it runs.
  std::function<void(Container& restored)> after_restore;
};
void check_round_trip(const Workload& w, const RoundTrip& how = {});

// Dumps one running container `dumps` times with --leave-running (each at a different moment
// of its work), removes it, and restores each image in turn: every restore must continue
// beyond the progress seen before its dump and keep progressing for the watch time.
void check_repeated_dumps(const Workload& w, int dumps);

// Runs w, dumps it (ending it) and restores the image, `generations` times over, each restored
// copy dumped again: every copy must continue beyond the progress seen before its dump, the
// last keep progressing for a second.
void check_generations(const Workload& w, int generations);

// Joins words for messages.
std::string join(const std::vector<std::string>& words);

}  // namespace stasis::test
