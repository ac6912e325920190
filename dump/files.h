// fds-<nspid>.img and the per-checkpoint open-file images (regfiles, pipes, pipe-data,
// chardevs). Every /proc/PID/fd/N becomes an FdEntry pointing at one open file description,
// described once in its kind's image; dup'd fds (same description, kcmp KCMP_FILE) share it.
// Sockets go to dump/unix_sockets.h and dump/inet_sockets.h. Anything we cannot bring back is refused with an
// UnsupportedError naming pid, fd and kind, before anything is changed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <sys/stat.h>

#include "chardev.pb.h"
#include "dump/file_locks.h"
#include "dump/inet_sockets.h"
#include "dump/terminals.h"
#include "dump/unix_sockets.h"
#include "eventfiles.pb.h"
#include "files.pb.h"
#include "mm.pb.h"
#include "pipe.pb.h"
#include "regfile.pb.h"

namespace stasis::dump {

// What a file mapping or an open file records to check, on restore, that the file is unchanged.
pb::FileIdentity identity_of(const struct stat& st);

// Fds wired to the container's monitor (its stdin/stdout/stderr plumbing): dumped as
// INHERITED, file_id = the standard fd (0, 1, 2) they stand for.
struct InheritedFd {
  int fd;               // fd number in the job
  uint64_t std_fd;      // 0, 1 or 2
};

// Deleted files and memfds are saved by their data, each up to this much (dump --ghost-limit).
inline constexpr uint64_t kDefaultGhostLimit = 64ull << 20;

class FileCollector {
 public:
  // leave_running: the job runs on after the dump (nothing of it may be consumed).
  explicit FileCollector(uint64_t ghost_limit = kDefaultGhostLimit, bool leave_running = false);
  // Collects the fd table of pid; inherited names the fds that are the container plumbing.
  std::vector<pb::FdEntry> collect(pid_t pid, const std::vector<InheritedFd>& inherited);
  // After every process: marks the pipes the job holds one direction of (other end outside),
  // and refuses unix sockets connected to outside the job.
  void mark_outside_pipes();
  // After every process: which process adds each epoll item again (dump/event_files.h),
  // given the pid in the job of each host pid collected.
  void place_epoll_items(const std::map<pid_t, pid_t>& pid_in_job);
  // The container's -t terminal (dump/terminals.h): its fds are INHERITED, its state saved.
  void set_console(const std::string& path) { terminals_.set_console(path); }
  // Writes the images of every open-file kind (even when empty): regfiles, pipes, pipe-data,
  // chardevs, eventfiles, unix-sockets, inet-sockets, netlink-sockets, ttys.
  void write_images(const std::filesystem::path& dir);

  size_t open_files() const {
    return regfiles_.size() + pipes_.size() + chardevs_.size() + event_files_.size() + unix_sockets_.count() +
           inet_.count();
  }
  // TCP, UDP and netlink sockets (dump/inet_sockets.h): --tcp-established, --leave-running.
  InetCollector& inet() { return inet_; }

 private:
  struct Known {
    pid_t pid;
    int fd;
    uint64_t id;
    pb::FdEntry::Kind kind;
  };
  // Id of an already-seen open file description shared with (pid, fd), or 0.
  uint64_t find_same(pid_t pid, int fd, pb::FdEntry::Kind kind, const struct stat& st) const;

  pb::RegFile describe_regfile(pid_t pid, int pidfd, int fd, const std::string& link, const struct stat& st,
                               uint32_t flags, uint64_t pos, uint64_t id);
  // Adds a record for pid's working directory if it was deleted (a ghost directory).
  void collect_cwd(pid_t pid);

  uint64_t ghost_limit_;
  std::string boot_id_;
  uint64_t next_id_ = 1;
  // Deleted inode (files, directories, memfds) -> id of its first RegFile.
  std::map<std::pair<dev_t, ino_t>, uint64_t> ghost_by_inode_;
  std::vector<Known> known_;
  std::map<std::pair<dev_t, ino_t>, std::vector<size_t>> known_by_inode_;  // indexes into known_
  LockCollector locks_;
  InetCollector inet_;
  TerminalCheck terminals_;
  UnixSocketCollector unix_sockets_;
  std::vector<pb::RegFile> regfiles_;
  std::vector<pb::PipeEnd> pipes_;
  std::vector<pb::PipeData> pipe_data_;
  std::vector<pb::EventFile> event_files_;
  std::map<uint64_t, std::vector<std::pair<pid_t, int>>> epoll_holders_;  // by id: every (pid, fd), in order
  std::vector<pb::CharDev> chardevs_;
  std::set<uint64_t> pipe_data_seen_;
  // pipe inode -> (has read end, has write end, first pid/fd seen): which pipes go outside.
  struct PipeEnds {
    bool read = false;
    bool write = false;
    pid_t pid = 0;
    int fd = -1;
  };
  std::map<uint64_t, PipeEnds> pipe_ends_;
};

// What a link target of /proc/PID/fd/N is, for messages: "socket", "eventfd", "epoll", ...
std::string describe_unsupported(const std::string& link, mode_t mode);

}  // namespace stasis::dump
