// Parsers for the /proc files that describe a task: maps, smaps, stat, status, task list,
// fds and fdinfo, namespaces. Each parse_* takes the text and a `source` (the file name) so
// errors say "SOURCE:LINE: what is wrong"; each read_* reads /proc/PID/... and parses it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"

namespace stasis::proc {

// ---------------------------------------------------------------------------------------
// /proc/PID/maps and smaps

enum class VmaKind {
  File,        // a path (possibly deleted)
  Anonymous,   // no name
  Heap,        // [heap]
  Stack,       // [stack]
  Vdso,        // [vdso]
  Vvar,        // [vvar]
  VvarVclock,  // [vvar_vclock] (Linux 6.13+)
  Vsyscall,    // [vsyscall]
  AnonNamed,   // [anon:NAME] (prctl PR_SET_VMA_ANON_NAME); NAME in anon_name
  AnonShmemNamed,  // [anon_shmem:NAME]
  OtherSpecial,    // any other [name] (e.g. [uprobes])
};

struct MapEntry {
  uint64_t start = 0;
  uint64_t end = 0;  // exclusive
  bool read = false, write = false, exec = false;
  bool shared = false;  // 's' rather than 'p'
  uint64_t offset = 0;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;
  std::string path;  // as printed, without the " (deleted)" suffix
  bool deleted = false;  // path ended with " (deleted)"
  VmaKind kind = VmaKind::Anonymous;
  std::string anon_name;  // for AnonNamed / AnonShmemNamed

  // Filled by smaps only.
  std::vector<std::string> vm_flags;  // "rd", "wr", "mr", "dd", "ht", ...
  std::map<std::string, uint64_t> sizes_kb;  // "Rss" -> kB, "Anonymous" -> kB, ...

  uint64_t size() const { return end - start; }
  bool has_vm_flag(std::string_view flag) const;
  // [vdso], [vvar], [vvar_vclock], [vsyscall]: mappings the kernel makes and owns.
  bool is_vdso_group() const {
    return kind == VmaKind::Vdso || kind == VmaKind::Vvar || kind == VmaKind::VvarVclock;
  }
  std::string perms() const;  // "rw-p"
};

// One maps line ("7f..-7f.. r-xp 00001000 08:01 1234   /usr/lib/libc.so.6").
MapEntry parse_maps_line(std::string_view line, std::string_view source, int line_number);
std::vector<MapEntry> parse_maps(std::string_view text, std::string_view source);
std::vector<MapEntry> parse_smaps(std::string_view text, std::string_view source);
std::vector<MapEntry> read_maps(pid_t pid);  // pid 0: the caller (/proc/self)
std::vector<MapEntry> read_smaps(pid_t pid);

// ---------------------------------------------------------------------------------------
// /proc/PID/stat

struct Stat {
  pid_t pid = 0;
  std::string comm;  // without the parentheses
  char state = '?';
  pid_t ppid = 0;
  pid_t pgrp = 0;
  pid_t session = 0;
  int tty_nr = 0;
  pid_t tpgid = 0;
  uint64_t flags = 0;
  uint64_t utime = 0, stime = 0;
  int64_t priority = 0;
  int64_t nice = 0;
  int64_t num_threads = 0;
  uint64_t starttime = 0;  // clock ticks after boot
  uint64_t vsize = 0;
  uint64_t rss = 0;  // pages
  uint64_t start_code = 0, end_code = 0, start_stack = 0;
  int exit_signal = 0;
  int processor = 0;
  uint64_t rt_priority = 0, policy = 0;
  uint64_t start_data = 0, end_data = 0, start_brk = 0;
  uint64_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
  int exit_code = 0;
  // Every field as text; fields[i] is field i+1 of proc(5) (fields[0] the pid, [1] comm).
  std::vector<std::string> fields;
};

Stat parse_stat(std::string_view text, std::string_view source);
Stat read_stat(pid_t pid);
// /proc/PID/task/TID/stat
Stat read_task_stat(pid_t pid, pid_t tid);

// ---------------------------------------------------------------------------------------
// /proc/PID/status

struct Status {
  std::string name;
  char state = '?';
  pid_t tgid = 0, pid = 0, ppid = 0, tracer_pid = 0;
  uint32_t uid[4] = {};  // real, effective, saved, filesystem
  uint32_t gid[4] = {};
  std::vector<uint32_t> groups;
  std::vector<pid_t> ns_tgid, ns_pid, ns_pgid, ns_sid;  // outermost namespace first
  int threads = 0;
  std::optional<uint32_t> umask;
  uint64_t sig_queued = 0, sig_queue_limit = 0;  // SigQ
  uint64_t sig_pending = 0, shared_pending = 0, sig_blocked = 0, sig_ignored = 0, sig_caught = 0;
  uint64_t cap_inh = 0, cap_prm = 0, cap_eff = 0, cap_bnd = 0, cap_amb = 0;
  int no_new_privs = 0;
  int seccomp = 0;
  // Every line as key -> value (value with leading whitespace trimmed).
  std::map<std::string, std::string> fields;
};

Status parse_status(std::string_view text, std::string_view source);
Status read_status(pid_t pid);
Status read_task_status(pid_t pid, pid_t tid);

// ---------------------------------------------------------------------------------------
// Threads, fds, namespaces

// Thread ids from /proc/PID/task, sorted (the leader, whose tid is pid, comes first).
std::vector<pid_t> list_tasks(pid_t pid);
// Children of a thread (/proc/PID/task/TID/children).
std::vector<pid_t> list_children(pid_t pid, pid_t tid);
// Open fds from /proc/PID/fd, sorted.
std::vector<int> list_fds(pid_t pid);

// /proc/PID/ns/KIND ("net", "mnt", ...) opened read-only; throws naming the path.
UniqueFd open_namespace(pid_t pid, std::string_view kind);
// readlink /proc/PID/fd/N ("/path", "pipe:[123]", "socket:[456]", "anon_inode:[eventfd]").
std::string read_fd_link(pid_t pid, int fd);

struct FdInfo {
  uint64_t pos = 0;
  uint32_t flags = 0;  // open flags (O_*), printed in octal
  int mnt_id = -1;
  uint64_t ino = 0;
  // The other lines (eventfd-count, tfd, inotify wd ..., lock ...) as key -> rest of line;
  // repeated keys keep every line, in order.
  std::vector<std::pair<std::string, std::string>> extra;
};

FdInfo parse_fdinfo(std::string_view text, std::string_view source);
FdInfo read_fdinfo(pid_t pid, int fd);

// Inode numbers of /proc/PID/ns/* by name ("pid", "net", "mnt", "pid_for_children", ...);
// namespaces this kernel does not have are left out.
std::map<std::string, uint64_t> read_namespaces(pid_t pid);

// readlink(2) that throws naming the path.
std::string read_link(const std::string& path);

}  // namespace stasis::proc
