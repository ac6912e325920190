// Event notification files (anon_inode:[eventfd], [signalfd], [timerfd], [eventpoll]): what
// their fdinfo says. An epoll's watched files are found by identity (kcmp KCMP_EPOLL_TFD) at
// an fd of a process that holds the epoll: restore adds each back from there.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "eventfiles.pb.h"

namespace stasis::dump {

// The kind of event file behind an fd link ("anon_inode:[eventfd]", ...), if it is one.
std::optional<std::string> event_file_kind(const std::string& link);

// Fills ev (id and flags already set) from the fdinfo lines of (pid, fd). An epoll item whose
// file pid has at no fd gets file_fd -1: place_epoll_items looks for it in the epoll's other
// holders.
void describe_event_file(pid_t pid, int fd, const std::string& kind,
                         const std::vector<std::pair<std::string, std::string>>& fdinfo, pb::EventFile& ev);

// A process holding an epoll (its host pid, pid in the job, and fd there).
struct EpollHolder {
  pid_t host_pid;
  pid_t pid;
  int fd;
};

// Says, for each item of epoll (described from holders[0]), which process adds it again on
// restore: one that holds the epoll and has the item's file (adder_pid, set when the epoll has
// several holders), at which fd (file_fd when not the number it was added with). Throws
// UnsupportedError for an item whose file no holder has open.
void place_epoll_items(pb::Epoll& epoll, const std::vector<EpollHolder>& holders);

}  // namespace stasis::dump
