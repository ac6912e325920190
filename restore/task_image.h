// Everything the checkpoint says about one process, loaded before anything is started, so
// that a missing or corrupt image fails the restore while nothing exists yet.
#pragma once

#include <cstdint>
#include <vector>

#include "core.pb.h"
#include "files.pb.h"
#include "images/checkpoint.h"
#include "mm.pb.h"
#include "pstree.pb.h"
#include "signals.pb.h"

namespace stasis::restore {

struct TaskImage {
  pb::TaskEntry entry;
  pb::TaskCore core;
  pb::SignalState signals;
  pb::MmState mm;
  std::vector<pb::FdEntry> fds;

  int pid() const { return entry.pid(); }
};

TaskImage load_task_image(const images::Checkpoint& checkpoint, const pb::TaskEntry& entry);

}  // namespace stasis::restore
