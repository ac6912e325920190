// Private /proc readers for dump: only the fields dump needs, each error naming pid and file.
// (common/proc.h by the kernel engineer covers the same ground; these stay small and local
// so dump does not wait on it.)
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace stasis::dump::procfs {

struct MapEntry {
  uint64_t start = 0;
  uint64_t end = 0;
  std::string perms;  // "rw-p"
  uint64_t offset = 0;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;
  std::string path;  // may be empty, "[heap]", "/lib/x (deleted)", ...
  std::vector<std::string> vm_flags;  // from smaps
};

// /proc/PID/smaps: the maps lines with their VmFlags.
std::vector<MapEntry> read_smaps(pid_t pid);

// /proc/PID/status as key -> value (value trimmed).
std::map<std::string, std::string> read_status(pid_t pid);
// The fields of /proc/PID/stat; index i is field i+1 of proc(5) (comm without parentheses).
std::vector<std::string> read_stat(pid_t pid);
// Thread ids from /proc/PID/task, sorted, leader first.
std::vector<pid_t> list_threads(pid_t pid);
// Children of every thread (/proc/PID/task/*/children).
std::vector<pid_t> list_children(pid_t pid);
// Open fds from /proc/PID/fd, sorted.
std::vector<int> list_fds(pid_t pid);

struct FdInfo {
  uint64_t pos = 0;
  uint32_t flags = 0;  // octal in fdinfo
  uint64_t mnt_id = 0;
};
FdInfo read_fdinfo(pid_t pid, int fd);

// readlink(2) of a /proc link; throws naming the path.
std::string read_link(const std::string& path);

// Last number of a status line like "NSpid:\t1234\t1" -> 1; throws if missing.
pid_t last_pid_field(const std::map<std::string, std::string>& status, const std::string& key, pid_t pid);
// Whitespace-separated numbers of a status value.
std::vector<uint64_t> numbers(const std::string& value, int base = 10);

}  // namespace stasis::dump::procfs
