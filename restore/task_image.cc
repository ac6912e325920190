#include "restore/task_image.h"

#include "common/error.h"
#include "images/image_file.h"

namespace stasis::restore {

TaskImage load_task_image(const images::Checkpoint& checkpoint, const pb::TaskEntry& entry) {
  using images::ImageType;
  TaskImage task;
  task.entry = entry;
  const int pid = entry.pid();
  images::read_single(checkpoint.path(ImageType::Core, pid), ImageType::Core, task.core);
  images::read_single(checkpoint.path(ImageType::Signals, pid), ImageType::Signals, task.signals);
  images::read_single(checkpoint.path(ImageType::Mm, pid), ImageType::Mm, task.mm);
  task.fds = images::read_all<pb::FdEntry>(checkpoint.path(ImageType::Fds, pid), ImageType::Fds);
  if (task.core.threads_size() == 0) fail("{}: pid {} has no threads", checkpoint.dir().string(), pid);
  if (task.core.threads(0).tid() != pid)
    fail("{}: pid {}: first thread is {}, not the leader", checkpoint.dir().string(), pid, task.core.threads(0).tid());
  return task;
}

}  // namespace stasis::restore
