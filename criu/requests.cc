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
#include "criu/images_dir.h"
#include "criu/options.h"
#include "criu/stats.h"
#include "dump/dump.h"
#include "restore/restore.h"
#include "proto/reflection.h"

namespace stasis::criu {

namespace fs = std::filesystem;

namespace {

// go-criu reads responses into 8 KiB (runc's loop 40 KiB): a message stays well below.
constexpr size_t kMaxErrmsg = 4000;

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
    // Only there, as CRIU's: our stderr is the client's, or on RESTORE the job's own.
    log::set_stderr(false);
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

// Notifications (notify_scripts): the stage's name, then the client's NOTIFY answer.
class Notifier {
 public:
  Notifier(Channel& channel, bool enabled) : channel_(channel), enabled_(enabled) {}
  // fd >= 0 goes along with the notification (orphan-pts-master's terminal master).
  void notify(const std::string& script, pid_t pid = 0, int fd = -1) {
    if (!enabled_) return;
    criu_resp r;
    r.set_type(NOTIFY);
    r.set_success(true);
    r.mutable_notify()->set_script(script);
    if (pid > 0) r.mutable_notify()->set_pid(pid);
    log::debug("notify {}", script);
    channel_.send(r, fd);
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
  // Asked or not, each is answered: dirty-page tracking for pre-dumps as `stasis check` finds
  // it (userfaultfd write-protect, docs/dump.md); no lazy restore, no pidfd store.
  criu_features* f = r.mutable_features();
  bool tracking = false;
  try {
    tracking = features::probe_feature("dirty-tracking").ok;
  } catch (const Error& e) {
    log::warn("dirty-tracking probe: {}", e.what());
  }
  f->set_mem_track(tracking);
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

// DUMP, or PRE_DUMP (runc --pre-dump): our `dump --pre-dump`, memory only, the job running on
// and tracked, with no notifications (the job is not stopped for long, its network not locked).
criu_resp handle_dump(const criu_req& req, Channel& channel) {
  const criu_opts& opts = req.opts();
  const bool pre_dump = req.type() == PRE_DUMP;
  Directories dirs = open_directories(opts, channel.peer_pid());
  const std::string log_name = log_file_name(opts, "dump.log");
  RequestLog log(dirs, log_name, opts.log_level());
  log::info("{} request from pid {} (stasis {} speaking CRIU {}.{}'s protocol), images in {}", type_name(req.type()),
            channel.peer_pid(), kVersion, kCriuMajor, kCriuMinor, dirs.images_path.string());
  if (log::level() <= log::Level::Debug) log::debug("options: {}", pb::to_json(opts));  // (built only when logged)
  std::optional<DumpDirectory> directory;
  bool locked = false;
  Notifier notifier(channel, opts.notify_scripts() && !pre_dump);
  try {
    check_dump_options(opts);
    dump::DumpOptions d = dump_options(opts, dirs.images_path, pre_dump);
    directory.emplace(dirs, std::vector<std::string>{log_name, kStatsDumpName});
    notifier.notify("pre-dump");
    if (!pre_dump && own_network_namespace(d.pid)) {
      notifier.notify("network-lock");
      locked = true;
    }
    dump::DumpReport report = dump::dump(d);
    log::info("{}", dump::format_report(d, report));
    UniqueFd dir = directory->succeeded();
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
    if (directory) {
      UniqueFd dir = directory->failed();
      if (dir) log.publish(dir.get());
    } else {
      log.publish(dirs.images.get());  // nothing was moved: the directory is as it was
    }
    return failure(req.type(), e.what(), dynamic_cast<const UnsupportedError*>(&e) ? EOPNOTSUPP : 0);
  }
  criu_resp r;
  r.set_type(req.type());
  r.set_success(true);
  r.mutable_dump()->set_restored(false);
  return r;
}

// The job back as runc's child (rst_sibling) in the cgroups runc put us in, its stdio ours,
// with the notifications runc acts on (post-restore gives it the job's pid).
criu_resp handle_restore(const criu_req& req, Channel& channel) {
  const criu_opts& opts = req.opts();
  Directories dirs = open_directories(opts, channel.peer_pid());
  RequestLog log(dirs, log_file_name(opts, "restore.log"), opts.log_level());
  log.publish(dirs.images.get());  // a restore leaves the images as they are: named at once
  log::info("RESTORE request from pid {} (stasis {} speaking CRIU {}.{}'s protocol), images in {}",
            channel.peer_pid(), kVersion, kCriuMajor, kCriuMinor, dirs.images_path.string());
  if (log::level() <= log::Level::Debug) log::debug("options: {}", pb::to_json(opts));
  Notifier notifier(channel, opts.notify_scripts());
  pid_t pid = 0;
  try {
    check_restore_options(opts);
    restore::RestoreOptions r;
    r.dir = dirs.images_path;
    r.inherit_fds = inherit_fd_specs(opts);
    restore::SiblingOptions sibling = restore_options(opts);
    sibling.notify = [&](const std::string& stage, pid_t job) { notifier.notify(stage, job); };
    // runc passes the master on to its --console-socket; without notifications it cannot take it.
    if (opts.orphan_pts_master() && opts.notify_scripts())
      sibling.terminal_master = [&](int master) { notifier.notify("orphan-pts-master", 0, master); };
    pid = restore::restore_as_sibling(r, sibling);
  } catch (const Error& e) {
    return failure(RESTORE, e.what(), dynamic_cast<const UnsupportedError*>(&e) ? EOPNOTSUPP : 0);
  }
  criu_resp resp;
  resp.set_type(RESTORE);
  resp.set_success(true);
  resp.mutable_restore()->set_pid(pid);
  return resp;
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
      case DUMP:
      case PRE_DUMP: return handle_dump(req, channel);
      case RESTORE: return handle_restore(req, channel);
      case NOTIFY: return failure(NOTIFY, "a NOTIFY request outside of a notification: no notification is waiting");
      default:
        return failure(req.type(),
                       fmt::format("request {} is not supported by stasis (it serves VERSION, FEATURE_CHECK, CHECK, "
                                   "DUMP, PRE_DUMP and RESTORE)",
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
