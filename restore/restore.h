// `stasis restore`: rebuilds a checkpoint as a running container.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <map>
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

// A restore for runc (CRIU's rst_sibling, `stasis swrk`, docs/criu.md): the job's PID 1 is a
// child of the restorer's parent (restore/sibling.h), in the restorer's cgroups, with no
// monitor, state or cgroup of ours; the restorer's stdio is the job's standard fds.
struct SiblingOptions {
  std::string root;  // the job's root directory on this host now (runc's criu-root); "": as dumped
  std::map<std::string, std::string> external_mounts;  // bind mounts: mount point in the job -> host path now
  // Each stage as CRIU names it (setup-namespaces, post-setup-namespaces, post-restore,
  // network-unlock, pre-resume, post-resume), with PID 1's host pid; throwing fails the restore.
  std::function<void(const std::string& stage, pid_t pid)> notify;
  // A job whose terminal was made outside it (the console of a runc `terminal: true`
  // container, dump/terminals.h) gets a new pty pair: its slave where the old one was, the
  // master given here before post-restore (CRIU's orphan-pts-master), to be passed on. Unset:
  // such a checkpoint is refused.
  std::function<void(int master)> terminal_master;
};

// Uses options.dir, inherit_fds and allow_changed_files. Returns the host pid of the job's
// PID 1 once the job runs. On failure nothing is left (PID 1 killed, and its namespaces with
// it) and Error says why.
pid_t restore_as_sibling(const RestoreOptions& options, const SiblingOptions& sibling);

}  // namespace stasis::restore
