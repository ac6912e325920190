// File locks: the "lock:" lines of an fd's fdinfo, e.g.
//   lock:	1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF
// (kind, mandatory or not, read or write, owner pid, device:inode, first byte, last byte or EOF).
// A POSIX lock shows on every fd of its inode (in every process) and a flock or OFD lock on
// every fd of its open file description: each is kept once, a POSIX lock by its owner only. Leases, delegations and locks being waited for are
// refused.
#pragma once

#include <sys/types.h>

#include <set>
#include <string>

#include "files.pb.h"

namespace stasis::dump {

class LockCollector {
 public:
  // Adds to entry the locks of one fdinfo "lock" value not seen yet; file_id is the fd's open
  // file description as the dump numbers them.
  void add(pid_t pid, pb::FdEntry& entry, const std::string& line);

 private:
  std::set<std::string> seen_;
};

}  // namespace stasis::dump
