// The log of a restored container. A dump keeps the container's log (it is the job's output so
// far); the restored container appends to it, or starts from a copy of it up to the dump when
// the dumped container still exists (a copy beside the original never writes to its log).
// See docs/launcher.md, "Logs of restored containers".
#pragma once

#include <filesystem>
#include <string>

#include "container.pb.h"
#include "launcher/state_store.h"

namespace stasis::launcher {

class RestoredLog {
 public:
  // dumped: the checkpoint's container config (its name and log_path); name: the restored
  // container's; user_log: restore --log ("" when not given). Throws Error when a container
  // named `name` exists, or when its default log is there already (a dumped container's).
  RestoredLog(const StateStore& store, const pb::ContainerConfig& dumped, const std::string& name,
              const std::string& user_log);
  ~RestoredLog();  // not committed: removes the copy or link it made
  RestoredLog(const RestoredLog&) = delete;
  RestoredLog& operator=(const RestoredLog&) = delete;

  // For config.log_path ("": the launcher's default, ROOT/NAME.log when detached).
  const std::string& path() const { return path_; }
  // The dumped container's own log, appended to: a failed restore must leave it in place.
  bool taken_over() const { return taken_over_; }
  // The restore worked: a default log moved to the new name loses its old name.
  void commit();

 private:
  std::string path_;
  bool taken_over_ = false;
  std::filesystem::path made_;       // removed unless committed
  std::filesystem::path old_name_;   // unlinked at commit (the log now lives under the new name)
  bool committed_ = false;
};

}  // namespace stasis::launcher
