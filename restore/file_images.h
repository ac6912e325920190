// The per-checkpoint file images (regular files, pipes, character devices), indexed by id,
// and what the checks before the restore decided about them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "chardev.pb.h"
#include "eventfiles.pb.h"
#include "images/checkpoint.h"
#include "inet_socket.pb.h"
#include "pipe.pb.h"
#include "regfile.pb.h"
#include "unix_socket.pb.h"
#include "tty.pb.h"

namespace stasis::restore {

struct FileImages {
  std::map<uint64_t, pb::RegFile> regfiles;     // by open-file id
  std::map<uint64_t, pb::PipeEnd> pipe_ends;    // by open-file id
  std::map<uint64_t, std::string> pipe_data;    // by pipe id
  std::map<uint64_t, pb::CharDev> chardevs;     // by open-file id
  std::map<uint64_t, pb::EventFile> event_files;  // by open-file id
  std::map<uint32_t, pb::UnixSocket> unix_sockets;  // by socket inode at the dump
  // Socket files (dev, inode) a live socket is bound to, in any network namespace here: a
  // socket file at a name to bind again is replaced only when it is not one of them.
  std::set<std::pair<uint32_t, uint32_t>> live_unix_files;
  std::map<uint64_t, pb::InetSocket> inet_sockets;       // by open-file id
  std::map<uint64_t, pb::NetlinkSocket> netlink_sockets; // by open-file id
  std::optional<pb::TtyState> console;  // the container's -t terminal (restore/terminals.h)
  std::map<uint64_t, pb::TtyState> ptys;  // pty ends, by open-file id
  // Pipes to outside that `--inherit-fd` connects: pipe id -> the stub's fd of the source.
  std::map<uint64_t, int> inherited_pipes;
  std::string boot_id;                 // of this boot: files dumped in it are compared by inode too
  std::set<uint64_t> changed_ok;       // regfiles found changed and accepted (--allow-changed-file)
};

FileImages load_file_images(const images::Checkpoint& checkpoint);

}  // namespace stasis::restore
