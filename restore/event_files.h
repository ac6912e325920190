// Event notification files come back as new ones of the same kind: an eventfd with its count
// (and semaphore mode), a signalfd with its mask, a timerfd armed with the time it had left
// and its unread expirations (TFD_IOC_SET_TICKS), an epoll. The epoll's watched files are
// added once every fd is in place, through the fds they were added with.
#pragma once

#include <vector>

#include "common/fd.h"
#include "eventfiles.pb.h"
#include "files.pb.h"
#include "restore/file_images.h"

namespace stasis::restore {

UniqueFd open_event_file(const pb::EventFile& file);

// After the whole fd table of process pid (pid in the job) is installed: EPOLL_CTL_ADD for
// every epoll's targets that this process adds (all of them, but for an epoll shared with
// other processes, where each adds those whose files it holds: EpollTarget.adder_pid).
void add_epoll_targets(pid_t pid, const std::vector<pb::FdEntry>& fds, const FileImages& images);

}  // namespace stasis::restore
