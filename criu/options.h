// criu_opts onto our dump: each option runc, podman or CRI-O may set is honoured, accepted
// because it changes nothing for what we do (documented in docs/criu.md), or refused with an
// OptionRefused that names it. Nothing is silently dropped: a field this file does not know
// (a newer protocol's) is refused too.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/fd.h"
#include "criu_rpc.pb.h"
#include "dump/dump.h"
#include "restore/restore.h"

namespace stasis::criu {

// An option set to something we do not honour; what() names it ("criu_opts.lazy_pages: ...").
class OptionRefused : public UnsupportedError {
 public:
  OptionRefused(std::string_view option, std::string_view why);
};

// The images and work directories of a request: images_dir_fd and work_dir_fd are the
// client's descriptors, opened here through /proc/<peer>/fd/N; images_dir is a path. The
// work directory (the log's) is the images directory unless work_dir_fd is given.
struct Directories {
  UniqueFd images;
  std::filesystem::path images_path;  // where images is, as a path in our mount namespace
  UniqueFd work;
  std::filesystem::path work_path;
  bool work_is_images = false;
};
Directories open_directories(const criu_opts& opts, pid_t peer);

// log_file checked (a name, no directory) and its default for the request type.
std::string log_file_name(const criu_opts& opts, std::string_view fallback);

// Throws OptionRefused for the first option of a DUMP or PRE_DUMP request we do not honour.
void check_dump_options(const criu_opts& opts);

// The dump's options for a checked DUMP (or PRE_DUMP: pre_dump) request, into dir.
dump::DumpOptions dump_options(const criu_opts& opts, const std::filesystem::path& dir, bool pre_dump = false);

// Throws OptionRefused for the first option of a RESTORE request we do not honour.
void check_restore_options(const criu_opts& opts);

// root and ext_mnt of a checked RESTORE request (notify is the caller's).
restore::SiblingOptions restore_options(const criu_opts& opts);

// inherit_fd as `stasis restore --inherit-fd` specs (fd[N]:pipe:[INODE]), each key once.
std::vector<std::string> inherit_fd_specs(const criu_opts& opts);

}  // namespace stasis::criu
