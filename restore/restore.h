// `stasis restore`: rebuilds a checkpoint as a running container.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace stasis::restore {

struct RestoreOptions {
  std::filesystem::path root;    // state root of containers
  std::filesystem::path dir;     // checkpoint directory
  std::string name;              // new container name; default: the dumped container's
  bool detach = false;           // return once restored instead of waiting for the job
  std::string log_path;          // job output; default: ROOT/<name>.log when detached
  std::vector<std::string> inherit_fds;  // --inherit-fd SOURCE:pipe:[INODE] (restore/inherit_fds.h)
  std::vector<std::string> allow_changed_files;  // open files reopened although changed (paths in the job)
  std::string ip, host_ip;       // --net veth: new addresses (as `run --ip/--host-ip`)
};

// Returns the exit status for `stasis restore`: 0 when detached, else the job's status.
int restore_checkpoint(const RestoreOptions& options);

}  // namespace stasis::restore
