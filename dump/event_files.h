// Event notification files (anon_inode:[eventfd], [signalfd], [timerfd], [eventpoll]): what
// their fdinfo says. An epoll's watched files must still be at the fds they were added with
// (checked with kcmp KCMP_EPOLL_TFD): restore adds them back by those fds.
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

// Fills ev (id and flags already set) from the fdinfo lines of (pid, fd).
void describe_event_file(pid_t pid, int fd, const std::string& kind,
                         const std::vector<std::pair<std::string, std::string>>& fdinfo, pb::EventFile& ev);

}  // namespace stasis::dump
