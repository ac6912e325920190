// Cgroups, v1 (one hierarchy per controller under /sys/fs/cgroup/<controller>) and v2
// (one unified hierarchy). Used by the launcher (limits), dump (freezer) and restore.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace stasis {

enum class CgroupDriver { V1, V2 };

// What the host uses: v1 when the v1 controllers are mounted (as on our machines), else v2.
CgroupDriver detect_cgroup_driver();
// "auto", "v1", "v2" -> driver; throws UsageError otherwise.
CgroupDriver parse_cgroup_driver(const std::string& name);
// Where containers' cgroups go by default, below each hierarchy's root.
inline constexpr const char* kDefaultCgroupParent = "stasis";
// A --cgroup-parent value -> the relative path plan() takes ("/a/b/" -> "a/b"); throws
// UsageError for an empty one or one with "." or ".." components.
std::string normalize_cgroup_parent(const std::string& parent);
const char* cgroup_driver_name(CgroupDriver driver);
// Where the hierarchies are mounted: /sys/fs/cgroup, or $STASIS_CGROUP_ROOT (tests point it at
// an empty directory to check the "not mounted" error).
std::filesystem::path cgroup_fs_root();
// "--device" argument -> v1 devices.allow rule: a path ("/dev/kmsg") is stat()ed; a rule such as
// "c 1:11" or "c 1:11 rw" is taken as is ("rwm" when no access is given).
std::string device_rule(const std::string& spec);

struct CgroupLimits {
  int64_t memory_max = 0;        // bytes; 0 = no limit
  double cpus = 0;               // CPUs as a CFS quota over cpu_period_us; 0 = no limit
  int64_t cpu_period_us = 100000;
  int64_t pids_max = 0;          // 0 = no limit
  std::string cpuset;            // "" = inherit
};

class Cgroup {
 public:
  // Creates the cgroup "<parent>/<name>" ("stasis/<name>" unless told; see
  // launcher::cgroup_parent_for) in every hierarchy it needs (v1: memory, pids, freezer,
  // devices, and cpu/cpuacct or cpuset only when limits.cpus or limits.cpuset ask for them;
  // v2: the unified one) and applies limits. A limit whose controller
  // is missing throws an Error naming the controller; nothing is left behind on failure.
  // v1 also sets the devices controller: deny all but null, zero, full, random, urandom, tty,
  // ptmx and pts, plus extra_devices (see device_rule); v2 refuses extra_devices.
  static Cgroup create(CgroupDriver driver, const std::string& name, const CgroupLimits& limits,
                       const std::vector<std::string>& extra_devices = {});
  // Where create() would put it (controller -> directory), checking that the hierarchies are
  // mounted, without making anything; and create() at those places. parent is relative to each
  // hierarchy's root ("stasis", "stasis-1a2b3c4d", "jobs/batch"); create() makes what is missing
  // of it and never removes it (other containers share it).
  static std::map<std::string, std::string> plan(CgroupDriver driver, const std::string& name,
                                                 const CgroupLimits& limits);
  static std::map<std::string, std::string> plan(CgroupDriver driver, const std::string& parent,
                                                 const std::string& name, const CgroupLimits& limits);
  static Cgroup create(CgroupDriver driver, const std::map<std::string, std::string>& planned,
                       const CgroupLimits& limits, const std::vector<std::string>& extra_devices = {});
  // Re-opens a cgroup from its recorded paths (controller -> absolute path; "unified" for v2).
  static Cgroup open(CgroupDriver driver, std::map<std::string, std::string> paths);

  CgroupDriver driver() const { return driver_; }
  const std::map<std::string, std::string>& paths() const { return paths_; }

  // Moves another process (all its threads) in. On both drivers the kernel takes its global
  // threadgroup lock for this, whose first writer waits for an RCU grace period (10-15 ms here).
  void add_process(pid_t pid) const;
  // Moves the calling process, which must be single-threaded (just forked), in. On v1 it writes
  // 0 to `tasks`: a move of the caller's own thread, which the kernel makes without that global
  // lock, in microseconds. On v2 only whole processes move, so it is add_process(getpid()).
  void join_self() const;
  std::vector<pid_t> processes() const;  // every process (tgid), from cgroup.procs
  std::vector<pid_t> threads() const;    // every thread, from tasks / cgroup.threads

  // Freezes and waits (bounded) until the kernel reports the cgroup frozen.
  void freeze() const;
  void thaw() const;
  bool frozen() const;

  // SIGKILLs every process in it (cgroup.kill on v2, a loop over cgroup.procs on v1).
  void kill_all() const;
  // Removes the cgroup directories (waits, bounded, for them to be empty).
  void destroy() const;

 private:
  Cgroup(CgroupDriver driver, std::map<std::string, std::string> paths) : driver_(driver), paths_(std::move(paths)) {}
  CgroupDriver driver_;
  std::map<std::string, std::string> paths_;
};

// Keeps a cgroup frozen for its lifetime: thaws on destruction unless release()d.
class CgroupFreeze {
 public:
  explicit CgroupFreeze(const Cgroup& cgroup);
  ~CgroupFreeze();
  CgroupFreeze(const CgroupFreeze&) = delete;
  CgroupFreeze& operator=(const CgroupFreeze&) = delete;
  void release() { active_ = false; }

 private:
  const Cgroup& cgroup_;
  bool active_ = true;
};

}  // namespace stasis
