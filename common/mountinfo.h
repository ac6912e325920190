// One line of /proc/PID/mountinfo (proc(5)), parsed, and what the launcher records of its own
// mounts so that a dump can tell the job's mounts from them (launcher/start.cc, dump/mounts.cc).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace stasis {

struct MountInfo {
  uint32_t id = 0;
  uint32_t parent = 0;
  uint32_t major = 0, minor = 0;
  std::string root;         // within the file system, unescaped
  std::string mount_point;  // unescaped
  std::string mount_options;  // per mount: "rw,nosuid,relatime"
  uint32_t shared = 0;        // peer group ("shared:N"), 0 if none
  uint32_t master = 0;        // "master:N", 0 if not a slave
  bool unbindable = false;
  std::string fstype;
  std::string source;
  std::string super_options;  // per superblock: "rw,size=1024k,mode=755"
};

// Lines in mount order. Throws Error naming source on a malformed line.
std::vector<MountInfo> parse_mountinfo(std::string_view text, std::string_view source);
std::vector<MountInfo> read_mountinfo(pid_t pid);  // 0: this process

// "ID HASH": the mount's id and a hash of its mount point (ids are reused after an unmount,
// the pair much less likely). Digits and lowercase hex only, so it travels in PID 1's report.
std::string mount_key(const MountInfo& m);

// The keys of the calling process's mounts, one "M KEY" line each: PID 1 reports them once
// the launcher has set its namespace up (ContainerState.launcher_mounts).
std::string own_mount_report();

}  // namespace stasis
