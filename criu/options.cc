#include "criu/options.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include "common/file_util.h"
#include "common/proc.h"

namespace stasis::criu {

namespace fs = std::filesystem;

OptionRefused::OptionRefused(std::string_view option, std::string_view why)
    : UnsupportedError(fmt::format("criu_opts.{}: {}", option, why)) {}

namespace {

// A directory the client named by its own descriptor number.
UniqueFd open_peer_dir(pid_t peer, int fd, std::string_view option, fs::path& path) {
  const std::string link = fmt::format("/proc/{}/fd/{}", peer, fd);
  UniqueFd dir(::open(link.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir)
    fail_errno(errno, "criu_opts.{} {}: open the client's (pid {}) descriptor through {}", option, fd, peer, link);
  // The dump takes a path: the one the descriptor shows, checked to be that directory here.
  char buf[PATH_MAX];
  ssize_t n = ::readlink(fmt::format("/proc/self/fd/{}", dir.get()).c_str(), buf, sizeof buf - 1);
  if (n < 0) fail_errno(errno, "criu_opts.{} {}: readlink", option, fd);
  path.assign(std::string(buf, static_cast<size_t>(n)));
  struct stat by_fd {}, by_path {};
  if (::fstat(dir.get(), &by_fd) < 0 || ::stat(path.c_str(), &by_path) < 0 || by_fd.st_dev != by_path.st_dev ||
      by_fd.st_ino != by_path.st_ino)
    fail("criu_opts.{} {}: the directory of the client's descriptor is not reachable at {} from here (removed, or "
         "in another mount namespace)",
         option, fd, path.string());
  return dir;
}

// "field(s) 200, 201": the numbers of the fields a lite message kept as unknown.
std::string unknown_field_numbers(const std::string& bytes) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()), static_cast<int>(bytes.size()));
  std::string out;
  for (uint32_t tag; (tag = in.ReadTag()) != 0;) {
    out += fmt::format("{}{}", out.empty() ? "" : ", ", tag >> 3);
    if (!google::protobuf::internal::WireFormatLite::SkipField(&in, tag)) break;
  }
  return out;
}

bool same_file(int a, int b) {
  struct stat sa {}, sb {};
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void refuse_if(bool set, std::string_view option, std::string_view why) {
  if (set) throw OptionRefused(option, why);
}

// Whether pid descends from ancestor (PPid chain in /proc).
bool descends_from(pid_t pid, pid_t ancestor) {
  for (int depth = 0; pid > 1 && depth < 4096; ++depth) {
    if (pid == ancestor) return true;
    try {
      pid = proc::read_status(pid).ppid;
    } catch (const Error&) {
      return false;
    }
  }
  return pid == ancestor;
}

// freeze_cgroup: CRIU freezes that cgroup; we seize pid and its subtree with ptrace instead
// (until stable), which leaves nothing to freeze. What the option
// does tell us is the container: a process in it that neither is nor descends from pid would
// be left out of the checkpoint, so it is refused.
void check_freeze_cgroup(const std::string& cgroup, pid_t pid) {
  std::string procs;
  try {
    procs = read_file(fs::path(cgroup) / "cgroup.procs");
  } catch (const Error& e) {
    throw OptionRefused("freeze_cgroup", fmt::format("{}: cannot list its processes: {}", cgroup, e.what()));
  }
  std::istringstream in(procs);
  for (pid_t p; in >> p;) {
    if (p == pid || descends_from(p, pid)) continue;
    throw OptionRefused("freeze_cgroup",
                        fmt::format("the container's cgroup {} holds pid {}, which is not pid {} nor one of its "
                                    "descendants: it would be left out of the checkpoint",
                                    cgroup, p, pid));
  }
}

}  // namespace

Directories open_directories(const criu_opts& opts, pid_t peer) {
  Directories d;
  if (opts.images_dir_fd() >= 0) {
    d.images = open_peer_dir(peer, opts.images_dir_fd(), "images_dir_fd", d.images_path);
  } else if (opts.has_images_dir() && !opts.images_dir().empty()) {
    d.images_path = opts.images_dir();
    d.images = UniqueFd(::open(d.images_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d.images) fail_errno(errno, "criu_opts.images_dir {}: open", d.images_path.string());
  } else {
    throw UsageError("criu_opts: neither images_dir_fd nor images_dir names the images directory");
  }
  if (opts.has_work_dir_fd() && opts.work_dir_fd() >= 0) {
    d.work = open_peer_dir(peer, opts.work_dir_fd(), "work_dir_fd", d.work_path);
    d.work_is_images = same_file(d.work.get(), d.images.get());
  } else {
    d.work = UniqueFd(::dup(d.images.get()));
    if (!d.work) fail_errno(errno, "dup the images directory's fd");
    d.work_path = d.images_path;
    d.work_is_images = true;
  }
  return d;
}

std::string log_file_name(const criu_opts& opts, std::string_view fallback) {
  std::string name = opts.has_log_file() ? opts.log_file() : std::string(fallback);
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
    throw OptionRefused("log_file", fmt::format("'{}': a file name in the work directory, without '/'", name));
  return name;
}

namespace {

// What neither a dump nor a restore of ours honours.
void check_common_options(const criu_opts& o) {
  if (!o.unknown_fields().empty())
    throw OptionRefused(fmt::format("field(s) {}", unknown_field_numbers(o.unknown_fields())),
                        "unknown to this stasis (a newer CRIU protocol's options): not honoured, so refused");
  refuse_if(o.lazy_pages(), "lazy_pages", "lazy pages (runc --lazy-pages) are not supported");
  refuse_if(o.has_status_fd(), "status_fd", "status_fd goes with lazy pages, which are not supported");
  refuse_if(o.tls(), "tls", "TLS goes with the page server, which is not supported");
  refuse_if(o.unprivileged(), "unprivileged", "stasis runs as root (CAP_SYS_ADMIN) only");
  if (o.has_config_file() && !o.config_file().empty()) {
    // runc names /etc/criu/runc.conf whether it exists or not; CRIU skips a missing one.
    std::error_code ec;
    if (fs::exists(o.config_file(), ec) && fs::file_size(o.config_file(), ec) > 0 && !ec)
      throw OptionRefused("config_file", fmt::format("{} exists and stasis does not read CRIU configuration files; "
                                                     "remove it or empty it",
                                                     o.config_file()));
  }
  for (const std::string& e : o.external())
    throw OptionRefused("external",
                        fmt::format("'{}': external resources are not supported (runc sends net[...] and pid[...] "
                                    "for a container that joined an existing network or PID namespace)",
                                    e));
}

}  // namespace

void check_dump_options(const criu_opts& o) {
  check_common_options(o);
  refuse_if(!o.has_pid() || o.pid() <= 0, "pid",
            "a dump needs the pid of the process to dump (dumping the requesting process itself is not supported)");
  // Ways of dumping we do not have.
  refuse_if(o.has_ps(), "ps", "the page server (runc --page-server) is not supported: images go to images_dir only");
  refuse_if(o.has_parent_img() && (o.parent_img().empty() || o.parent_img()[0] == '/'), "parent_img",
            fmt::format("'{}': the parent checkpoint is a path relative to the images directory, as CRIU's",
                        o.parent_img()));
  refuse_if(o.has_pidfd_store_sk(), "pidfd_store_sk", "the pidfd store of pre-dumps is not supported");
  refuse_if(o.leave_stopped(), "leave_stopped", "leaving the job stopped after the dump is not supported");
  refuse_if((o.empty_ns() & ~static_cast<uint32_t>(CLONE_NEWNET)) != 0, "empty_ns",
            fmt::format("{:#x}: only CLONE_NEWNET (an empty network namespace at restore) is supported", o.empty_ns()));
  if (o.has_freeze_cgroup() && !o.freeze_cgroup().empty()) check_freeze_cgroup(o.freeze_cgroup(), o.pid());
  // Everything else runc, podman and CRI-O set on a dump is accepted (docs/criu.md says why
  // each changes nothing here): track_mem (a pre-dump always tracks, and a dump on a parent
  // whose tracking ended saves every page), leave_running either way (without it the job is killed once
  // dumped, and RESTORE brings it back), tcp_established, ext_unix_sk, file_locks,
  // auto_dedup, manage_cgroups(_mode), ext_mnt, notify_scripts, root (shell_job and orphan_pts_master: dump_options),
  // log_level, log_file, work_dir_fd, cpu_cap, timeout, restore-only options.
}

void check_restore_options(const criu_opts& o) {
  check_common_options(o);
  refuse_if(!o.rst_sibling(), "rst_sibling",
            "unset: stasis restores only as runc asks, the job's PID 1 a child of the client (rst_sibling)");
  refuse_if(o.has_ps(), "ps", "restoring from a page server is not supported");
  // runc sends CLONE_NEWNET for a container without configured interfaces: its namespace is
  // made new here anyway, with the dumped loopback.
  refuse_if((o.empty_ns() & ~static_cast<uint32_t>(CLONE_NEWNET)) != 0, "empty_ns",
            fmt::format("{:#x}: only an empty network namespace (CLONE_NEWNET) is supported", o.empty_ns()));
  refuse_if(o.veths_size() > 0, "veths", "veth pairs (runc's configured network interfaces) are not supported");
  refuse_if(o.join_ns_size() > 0, "join_ns", "joining existing namespaces on restore is not supported");
  refuse_if(o.exec_cmd_size() > 0, "exec_cmd", "running a command after the restore is not supported");
  refuse_if(o.tcp_close(), "tcp_close", "closing the established connections on restore is not supported");
  refuse_if(o.leave_stopped(), "leave_stopped", "leaving the job stopped after the restore is not supported");
  refuse_if(o.has_lsm_profile() && !o.lsm_profile().empty(), "lsm_profile",
            fmt::format("'{}': LSM profiles (AppArmor, SELinux) are not set on restore", o.lsm_profile()));
  refuse_if(o.has_lsm_mount_context() && !o.lsm_mount_context().empty(), "lsm_mount_context",
            "SELinux mount contexts are not set on restore");
  for (const inherit_fd& f : o.inherit_fd())
    refuse_if(f.key().rfind("pipe:[", 0) != 0, "inherit_fd",
              fmt::format("'{}' (fd {}): only the container's stdio pipes (pipe:[INODE]) can be given", f.key(), f.fd()));
  // Accepted: root, ext_mnt (restore_options), manage_cgroups(_mode) and cg_root (the job
  // goes into the cgroups the client put us in), shell_job, ext_unix_sk, tcp_established (the
  // checkpoint's connections come back in any case), file_locks, evasive_devices, auto_dedup,
  // notify_scripts (orphan_pts_master: requests.cc, the new terminal's master), log options, the dump-only options.
}

dump::DumpOptions dump_options(const criu_opts& o, const fs::path& dir, bool pre_dump) {
  dump::DumpOptions d;
  d.pre_dump = pre_dump;  // memory only, the job running on, tracked (runc --pre-dump)
  // CRIU's parent_img is relative to the images directory (runc --parent-path ../pre).
  if (o.has_parent_img()) d.parent = (dir / o.parent_img()).lexically_normal();
  d.pid = o.pid();
  d.dir = dir;
  d.leave_running = o.leave_running();
  d.tcp_established = o.tcp_established();  // as `stasis dump --tcp-established`
  // A terminal made outside the job: runc's console for `terminal: true` (the job's
  // controlling terminal; runc always asks for orphan_pts_master, and takes the new master at
  // restore), or with shell_job any terminal at the job's stdio too.
  d.shell_job = o.shell_job();
  d.outside_console = o.orphan_pts_master();
  // CRIU's own default (1 MiB) is below ours: only an explicit value replaces ours.
  if (o.has_ghost_limit()) d.ghost_limit = o.ghost_limit();
  return d;
}

restore::SiblingOptions restore_options(const criu_opts& o) {
  restore::SiblingOptions r;
  r.root = o.root();
  for (const ext_mount_map& m : o.ext_mnt()) r.external_mounts[m.key()] = m.val();
  return r;
}

std::vector<std::string> inherit_fd_specs(const criu_opts& o) {
  std::vector<std::string> out;
  std::vector<std::string> keys;
  for (const inherit_fd& f : o.inherit_fd()) {
    // runc names a pipe once per standard fd that holds it (stdout and stderr on one pipe).
    if (std::find(keys.begin(), keys.end(), f.key()) != keys.end()) continue;
    keys.push_back(f.key());
    out.push_back(fmt::format("fd[{}]:{}", f.fd(), f.key()));
  }
  return out;
}

}  // namespace stasis::criu
