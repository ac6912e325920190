#include "launcher/restored_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"

namespace stasis::launcher {

namespace fs = std::filesystem;

namespace {

// Copies the first `bytes` bytes of from (all of it when 0) into a new file `to`.
void copy_prefix(const fs::path& from, const fs::path& to, int64_t bytes) {
  UniqueFd in = open_or_throw(from, O_RDONLY);
  UniqueFd out = open_or_throw(to, O_WRONLY | O_CREAT | O_EXCL, 0640);
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) fail_errno(errno, "stat {}", from.string());
  off_t left = bytes > 0 ? std::min<off_t>(bytes, st.st_size) : st.st_size;
  while (left > 0) {
    ssize_t n = ::copy_file_range(in.get(), nullptr, out.get(), nullptr, static_cast<size_t>(left), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(errno, "copy {} to {}", from.string(), to.string());
    if (n == 0) break;  // shorter than it was
    left -= n;
  }
}

}  // namespace

RestoredLog::RestoredLog(const StateStore& store, const pb::ContainerConfig& dumped, const std::string& name,
                         const std::string& user_log) {
  if (!user_log.empty()) {
    path_ = user_log;
    return;
  }
  const std::string& old_log = dumped.log_path();
  if (old_log.empty()) return;  // it wrote to its caller's stdio: nothing to continue
  std::error_code ec;
  if (!fs::is_directory(fs::path(old_log).parent_path(), ec)) {
    // Dumped on another host or under a state root that is gone: nothing to continue here.
    log::warn("the log of the dumped container, {}, is not on this host: the restored one starts anew", old_log);
    return;
  }
  // The same check start_container makes, early: nothing below may touch a live container's log.
  if (store.try_load(name)) fail("a container named {} already exists under {}", name, store.root().string());
  const bool original_exists = dumped.name() != name && store.try_load(dumped.name()).has_value();
  const bool default_log = old_log == store.default_log_path(dumped.name()).string();
  if (!original_exists && (dumped.name() == name || !default_log)) {
    // The same container again (or its own --log file): it goes on appending.
    path_ = old_log;
    taken_over_ = true;
    return;
  }
  const fs::path new_log = store.default_log_path(name);
  path_ = new_log.string();
  if (fs::exists(new_log, ec)) {
    fail("{} exists: the log of a dumped container named {}; restore that checkpoint, remove the file, or give --log",
         new_log.string(), name);
  }
  if (!fs::exists(old_log, ec)) return;  // gone (removed with its container): a fresh log
  if (original_exists) {
    // Beside the original: its output up to the dump (it has gone on writing since), and the
    // original's log untouched.
    try {
      copy_prefix(old_log, new_log, dumped.log_bytes_at_dump());
    } catch (const Error&) {
      ::unlink(new_log.c_str());  // no destructor runs for a constructor that throws
      throw;
    }
  } else {
    // The dumped container's default log, renamed for the new one: linked now, the old name
    // unlinked at commit, so a failed restore leaves it as it was.
    if (::link(old_log.c_str(), new_log.c_str()) != 0) fail_errno(errno, "link {} to {}", old_log, new_log.string());
    old_name_ = old_log;
  }
  made_ = new_log;
}

void RestoredLog::commit() {
  committed_ = true;
  if (!old_name_.empty()) ::unlink(old_name_.c_str());
}

RestoredLog::~RestoredLog() {
  if (committed_ || made_.empty()) return;
  if (::unlink(made_.c_str()) != 0 && errno != ENOENT)
    log::warn("could not remove {}: {}", made_.string(), describe_errno(errno));
}

}  // namespace stasis::launcher
