#include "dump/file_locks.h"

#include <cstdlib>
#include <sstream>
#include <vector>

#include "common/error.h"

namespace stasis::dump {

void LockCollector::add(pid_t pid, pb::FdEntry& entry, const std::string& line) {
  const std::string where = fmt::format("pid {} fd {}: lock '{}'", pid, entry.fd(), line);
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  // "1:" KIND MODE RW PID DEV:INO START END
  if (words.size() != 8) {
    if (line.find("->") != std::string::npos)
      throw UnsupportedError(fmt::format("{}: the job is waiting for a file lock: not supported yet", where));
    fail("{}: cannot read it", where);
  }
  const std::string& kind = words[1];
  pb::FileLock lock;
  if (kind == "FLOCK") lock.set_kind(pb::FileLock::FLOCK);
  else if (kind == "POSIX") lock.set_kind(pb::FileLock::POSIX);
  else if (kind == "OFDLCK") lock.set_kind(pb::FileLock::OFD);
  else throw UnsupportedError(fmt::format("{}: {} locks are not supported yet", where, kind));
  if (words[2] != "ADVISORY") throw UnsupportedError(fmt::format("{}: mandatory locks are not supported", where));
  if (words[3] != "READ" && words[3] != "WRITE") fail("{}: unknown lock type {}", where, words[3]);
  lock.set_write(words[3] == "WRITE");
  const auto number = [&](const std::string& w) {
    char* end = nullptr;
    const uint64_t n = std::strtoull(w.c_str(), &end, 10);
    if (w.empty() || *end != '\0') fail("{}: '{}' is not a byte offset", where, w);
    return n;
  };
  const uint64_t first = number(words[6]);
  const uint64_t last = words[7] == "EOF" ? 0 : number(words[7]);
  if (words[7] != "EOF" && last < first) fail("{}: the range ends before it starts", where);
  lock.set_start(first);
  lock.set_length(words[7] == "EOF" ? 0 : last - first + 1);
  // A POSIX lock belongs to its owner, and shows on every fd of the inode, in every process:
  // the owner's own fds record it (restore takes it in the owner).
  if (lock.kind() == pb::FileLock::POSIX && words[4] != std::to_string(pid)) return;
  // The same lock once: by inode for POSIX, by open file description for the others.
  const std::string rest = fmt::format("{} {} {} {} {} {}", words[1], words[3], words[4], words[5], words[6], words[7]);
  const std::string key = lock.kind() == pb::FileLock::POSIX ? rest : fmt::format("{}#{}", entry.file_id(), rest);
  if (!seen_.insert(key).second) return;
  *entry.add_locks() = lock;
}

}  // namespace stasis::dump
