#include "criu/requests.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "common/error.h"
#include "common/features.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/version.h"
#include "criu/options.h"
#include "criu/stats.h"
#include "dump/dump.h"

namespace stasis::criu {

namespace fs = std::filesystem;

namespace {

// go-criu reads responses into 8 KiB (runc's loop 40 KiB): a message stays well below.
constexpr size_t kMaxErrmsg = 4000;

// runc writes this into the images directory before it asks for a DUMP; it reads it back on
// restore. Not part of our checkpoint: kept aside while the dump runs and put back.
constexpr const char* kRuncDescriptors = "descriptors.json";

std::string type_name(criu_req_type type) {
  const std::string& name = criu_req_type_Name(type);
  return name.empty() ? fmt::format("type {}", static_cast<int>(type)) : name;
}

log::Level log_level_of(int criu_level) {
  if (criu_level <= 1) return log::Level::Error;
  if (criu_level == 2) return log::Level::Warn;
  if (criu_level == 3) return log::Level::Info;
  return log::Level::Debug;
}

// The request's log (log_file in the work directory, at log_level). In the images directory,
// which a dump needs empty, it is written unnamed (O_TMPFILE) and named once the dump is over.
class RequestLog {
 public:
  RequestLog(const Directories& dirs, std::string name, int criu_level) : dirs_(dirs), name_(std::move(name)) {
    log::set_level(log_level_of(criu_level));
    if (dirs.work_is_images) {
      fd_ = UniqueFd(::openat(dirs.work.get(), ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
      if (!fd_) {
        log::warn("no log in {}: O_TMPFILE: {}", dirs.work_path.string(), describe_errno(errno));
        return;
      }
      log::set_file(fmt::format("/proc/self/fd/{}", fd_.get()));
    } else {
      (void)::unlinkat(dirs.work.get(), name_.c_str(), 0);  // a new log per request, as CRIU's
      log::set_file((dirs.work_path / name_).string());
    }
  }
  // Names the unnamed log in dir (the images directory, perhaps made again after a failed dump).
  void publish(int dir) {
    if (!fd_) return;
    (void)::unlinkat(dir, name_.c_str(), 0);
    if (::linkat(AT_FDCWD, fmt::format("/proc/self/fd/{}", fd_.get()).c_str(), dir, name_.c_str(), AT_SYMLINK_FOLLOW) < 0)
      log::warn("could not name the log {} in {}: {}", name_, dirs_.work_path.string(), describe_errno(errno));
  }

 private:
  const Directories& dirs_;
  std::string name_;
  UniqueFd fd_;
};

// runc's file in the images directory, held while the dump needs the directory empty.
struct Stashed {
  std::string name;
  std::string data;
};

// Takes runc's descriptors.json (and stale files of ours) out of the images directory.
std::vector<Stashed> stash_client_files(const Directories& dirs, const std::string& log_name) {
  std::vector<Stashed> out;
  const fs::path descriptors = dirs.images_path / kRuncDescriptors;
  std::error_code ec;
  // Anything else there (runc reuses a directory, "a container can be checkpointed many
  // times") is refused before a file is touched.
  std::vector<std::string> others;
  for (fs::directory_iterator it(dirs.images_path, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name != kRuncDescriptors && name != log_name && name != kStatsDumpName) others.push_back(name);
  }
  if (ec) fail("list the images directory {}: {}", dirs.images_path.string(), ec.message());
  if (!others.empty()) {
    std::sort(others.begin(), others.end());
    fail("the images directory {} already holds {} file(s) ({}{}): stasis writes a checkpoint into an empty directory; "
         "give another --image-path, or empty this one",
         dirs.images_path.string(), others.size(), others.front(), others.size() > 1 ? ", ..." : "");
  }
  if (fs::is_regular_file(descriptors, ec)) {
    out.push_back({kRuncDescriptors, read_file(descriptors)});
    if (::unlink(descriptors.c_str()) < 0) fail_errno(errno, "unlink {}", descriptors.string());
  }
  // Files of an earlier request of ours, which the dump would take for someone else's.
  if (dirs.work_is_images)
    for (const std::string& name : {log_name, std::string(kStatsDumpName)})
      if (fs::is_regular_file(dirs.images_path / name, ec)) fs::remove(dirs.images_path / name, ec);
  return out;
}

// Puts them back; after a failed dump (which removes its directory) the directory is made again,
// so that runc finds the log it points the user to. Returns the directory's fd.
UniqueFd unstash(const Directories& dirs, const std::vector<Stashed>& files) {
  if (::mkdir(dirs.images_path.c_str(), 0700) < 0 && errno != EEXIST)
    log::warn("make the images directory {} again: {}", dirs.images_path.string(), describe_errno(errno));
  UniqueFd dir(::open(dirs.images_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return dir;
  for (const auto& f : files) {
    UniqueFd out(::openat(dir.get(), f.name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!out || ::write(out.get(), f.data.data(), f.data.size()) != static_cast<ssize_t>(f.data.size()))
      log::warn("could not put {} back into {}: {}", f.name, dirs.images_path.string(), describe_errno(errno));
  }
  return dir;
}

// Notifications (notify_scripts): the stage's name, then the client's NOTIFY answer.
class Notifier {
 public:
  Notifier(Channel& channel, bool enabled) : channel_(channel), enabled_(enabled) {}
  void notify(const std::string& script, pid_t pid = 0) {
    if (!enabled_) return;
    criu_resp r;
    r.set_type(NOTIFY);
    r.set_success(true);
    r.mutable_notify()->set_script(script);
    if (pid > 0) r.mutable_notify()->set_pid(pid);
    log::debug("notify {}", script);
    channel_.send(r);
    BadRequest bad;
    std::optional<criu_req> answer = channel_.receive(&bad);
    if (!answer) {
      if (!bad.why.empty()) fail("the answer to notification '{}': {}", script, bad.why);
      fail("the client closed the connection instead of answering notification '{}'", script);
    }
    if (answer->type() != NOTIFY)
      fail("the client answered notification '{}' with a {} request instead of NOTIFY", script, type_name(answer->type()));
    if (!answer->notify_success()) fail("the client's action for notification '{}' failed", script);
  }

 private:
  Channel& channel_;
  bool enabled_;
};

bool own_network_namespace(pid_t pid) {
  struct stat theirs {}, ours {};
  return ::stat(fmt::format("/proc/{}/ns/net", pid).c_str(), &theirs) == 0 &&
         ::stat("/proc/self/ns/net", &ours) == 0 && theirs.st_ino != ours.st_ino;
}

criu_resp handle_version() {
  criu_resp r;
  r.set_type(VERSION);
  r.set_success(true);
  criu_version* v = r.mutable_version();
  v->set_major_number(kCriuMajor);
  v->set_minor_number(kCriuMinor);
  v->set_sublevel(0);
  // No gitid: go-criu (runc, podman) counts a git build as the next minor release.
  v->set_name(fmt::format("stasis {}", kVersion));
  return r;
}

criu_resp handle_feature_check() {
  criu_resp r;
  r.set_type(FEATURE_CHECK);
  r.set_success(true);
  // Asked or not, each is answered: none of them is there (no dirty-page tracking for
  // pre-dumps, no lazy restore, no pidfd store).
  criu_features* f = r.mutable_features();
  f->set_mem_track(false);
  f->set_lazy_pages(false);
  f->set_pidfd_store(false);
  return r;
}

criu_resp handle_check() {
  std::vector<features::FeatureResult> results = features::probe_features();
  if (features::all_required_ok(results)) {
    criu_resp r;
    r.set_type(CHECK);
    r.set_success(true);
    return r;
  }
  std::string missing;
  for (const auto& f : results)
    if (f.required && !f.ok) missing += fmt::format("{}{} ({})", missing.empty() ? "" : "; ", f.name, f.detail);
  return failure(CHECK, "this kernel lacks what stasis needs: " + missing);
}

criu_resp handle_dump(const criu_req& req, Channel& channel) {
  const criu_opts& opts = req.opts();
  Directories dirs = open_directories(opts, channel.peer_pid());
  const std::string log_name = log_file_name(opts, "dump.log");
  RequestLog log(dirs, log_name, opts.log_level());
  log::info("DUMP request from pid {} (stasis {} speaking CRIU {}.{}'s protocol), images in {}", channel.peer_pid(),
            kVersion, kCriuMajor, kCriuMinor, dirs.images_path.string());
  std::vector<Stashed> stashed;
  bool locked = false;
  Notifier notifier(channel, opts.notify_scripts());
  try {
    check_dump_options(opts);
    dump::DumpOptions d = dump_options(opts, dirs.images_path);
    stashed = stash_client_files(dirs, log_name);
    notifier.notify("pre-dump");
    if (own_network_namespace(d.pid)) {
      notifier.notify("network-lock");
      locked = true;
    }
    dump::DumpReport report = dump::dump(d);
    log::info("{}", dump::format_report(d, report));
    UniqueFd dir = unstash(dirs, stashed);
    if (dir) log.publish(dir.get());
    try {
      write_dump_stats(dirs.work.get(), report);
    } catch (const Error& e) {
      log::warn("no {} in {}: {}", kStatsDumpName, dirs.work_path.string(), e.what());
    }
    notifier.notify("post-dump");
    if (locked && d.leave_running) notifier.notify("network-unlock");
  } catch (const Error& e) {
    // (serve() logs the failure.) The job runs on (a failed dump leaves it untouched): its network too.
    if (locked) {
      try {
        notifier.notify("network-unlock");
      } catch (const Error& unlock) {
        log::error("{}", unlock.what());
      }
    }
    if (!stashed.empty() || dirs.work_is_images) {
      UniqueFd dir = unstash(dirs, stashed);
      if (dir) log.publish(dir.get());
    }
    return failure(DUMP, e.what(), dynamic_cast<const UnsupportedError*>(&e) ? EOPNOTSUPP : 0);
  }
  criu_resp r;
  r.set_type(DUMP);
  r.set_success(true);
  r.mutable_dump()->set_restored(false);
  return r;
}

}  // namespace

criu_resp failure(criu_req_type type, std::string_view why, int cr_errno) {
  criu_resp r;
  r.set_type(type);
  r.set_success(false);
  if (cr_errno) r.set_cr_errno(cr_errno);
  std::string msg(why.substr(0, kMaxErrmsg));
  r.set_cr_errmsg(msg);
  return r;
}

criu_resp handle_request(const criu_req& req, Channel& channel) {
  try {
    switch (req.type()) {
      case VERSION: return handle_version();
      case FEATURE_CHECK: return handle_feature_check();
      case CHECK: return handle_check();
      case DUMP: return handle_dump(req, channel);
      case RESTORE:
        return failure(RESTORE,
                       "RESTORE is not supported by this stasis: a runc checkpoint holds no record of the container's "
                       "mounts yet, from which a restore would remake them (see docs/criu.md)",
                       EOPNOTSUPP);
      case NOTIFY: return failure(NOTIFY, "a NOTIFY request outside of a notification: no notification is waiting");
      default:
        return failure(req.type(),
                       fmt::format("request {} is not supported by stasis (it serves VERSION, FEATURE_CHECK, CHECK "
                                   "and DUMP)",
                                   type_name(req.type())),
                       EOPNOTSUPP);
    }
  } catch (const UsageError& e) {
    return failure(req.type(), e.what(), EINVAL);
  } catch (const UnsupportedError& e) {
    return failure(req.type(), e.what(), EOPNOTSUPP);
  } catch (const std::exception& e) {
    return failure(req.type(), e.what());
  }
}

}  // namespace stasis::criu
