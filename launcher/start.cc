// start_container: the caller, the monitor and the container's PID 1 (see container.h).
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>

#include "common/error.h"
#include "common/file_util.h"
#include "common/mountinfo.h"
#include "launcher/bridge.h"
#include "launcher/cgroup_warmup.h"
#include "launcher/config.h"
#include "launcher/console.h"
#include "launcher/mounts.h"
#include "launcher/container.h"
#include "launcher/network.h"
#include "launcher/reaper.h"
#include "launcher/state_store.h"

namespace stasis::launcher {

namespace fs = std::filesystem;

namespace {

constexpr int kStartTimeoutMs = 30000;
const char* const kNamespaces[] = {"pid", "mnt", "net", "uts", "ipc", "cgroup"};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// How start_impl was called: by `stasis run` (run_container) or by restore (start_container).
struct StartMode {
  // PID 1 keeps its report pipe open into init, which tells an exec failure there (exec_init);
  // the monitor answers only at the exec.
  bool report_exec = false;
  // A new job: its default log (ROOT/NAME.log) starts empty, even if a dumped container of
  // that name left one behind.
  bool fresh_log = false;
  // Adds to the state before its first write (restore: its checkpoint).
  std::function<void(pb::ContainerState&)> mark;
  // Restore: a published port another container holds is left out (with a warning) instead of
  // failing, so that a copy can run beside its original.
  bool drop_taken_ports = false;
  // Restore: runs in the monitor with PID 1's pid once its network namespace exists, before
  // any of its links comes up.
  std::function<void(pid_t)> before_network = {};
};

// PID 1's end of its report pipe while init runs, when StartMode::report_exec (else -1).
int g_exec_report = -1;

// Thrown in the monitor when PID 1 reports that the exec of the job failed.
struct ExecFailed {
  int err;
};

// Where PID 1's stdio comes from (fds of the caller, inherited by monitor and PID 1).
struct Stdio {
  int in = 0, out = 1, err = 2;
  UniqueFd owned_in, owned_log;
  bool created_log = false;  // the log did not exist before (a failed start removes it)
  // -t: the pty pair (the slave is PID 1's stdio; the monitor keeps the master and writes the
  // log) and, in the foreground, the monitor's and the caller's ends of the caller's connection.
  ConsolePair console;
  UniqueFd console_peer, caller_console;
  UniqueFd stdin_writer;  // -d -i without -t: the monitor's end of the job's stdin
};

Stdio plan_stdio(const pb::ContainerConfig& config, bool fresh_log) {
  Stdio s;
  if (config.detach() && config.interactive() && !config.tty()) {
    // -d -i: stdin stays open, a pipe that `stasis attach` writes into through the monitor.
    int p[2];
    check_sys(::pipe2(p, O_CLOEXEC), "-i: pipe for the job's stdin");
    s.owned_in.reset(p[0]);
    s.stdin_writer.reset(p[1]);
    s.in = s.owned_in.get();
  } else if (config.detach()) {
    s.owned_in = open_or_throw("/dev/null", O_RDONLY);
    s.in = s.owned_in.get();
  }
  if (!config.log_path().empty()) {
    s.owned_log = with_context("--log", [&] {
      const int flags = O_WRONLY | O_CREAT | O_APPEND;
      if (fresh_log) {
        s.created_log = true;
        return open_or_throw(config.log_path(), flags | O_TRUNC, 0640);
      }
      // A log that exists (a restored container's, taken over) is appended to and outlives a
      // failed start.
      int fd = ::open(config.log_path().c_str(), flags | O_EXCL | O_CLOEXEC, 0640);
      if (fd >= 0) {
        s.created_log = true;
        return UniqueFd(fd);
      }
      if (errno != EEXIST) fail_errno(errno, "open {}", config.log_path());
      return open_or_throw(config.log_path(), flags, 0640);
    });
    s.out = s.err = s.owned_log.get();
  }
  if (config.tty()) {
    s.console = open_console_pair();
    s.in = s.out = s.err = s.console.slave.get();
    if (!config.detach()) std::tie(s.console_peer, s.caller_console) = console_socketpair();
  }
  return s;
}

void write_byte(int fd, char c) {
  while (::write(fd, &c, 1) < 0) {
    if (errno != EINTR) fail_errno(errno, "write to pipe");
  }
}

// Reads one byte; returns 0 at end of file.
char read_byte(int fd) {
  char c = 0;
  for (;;) {
    ssize_t n = ::read(fd, &c, 1);
    if (n == 1) return c;
    if (n == 0) return 0;
    if (errno != EINTR) fail_errno(errno, "read from pipe");
  }
}

std::string read_to_end(int fd) {
  std::string out;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) out.append(buf, static_cast<size_t>(n));
    else if (n == 0 || errno != EINTR) break;
  }
  return out;
}

void write_string(int fd, const std::string& s) {
  try {
    write_all(fd, std::as_bytes(std::span(s.data(), s.size())), "pipe");
  } catch (const Error&) {
    // The reader is gone: nobody to tell.
  }
}

bool shares_host_namespace(const pb::ContainerConfig& config, std::string_view kind) {
  for (const auto& k : config.host_namespaces())
    if (k == kind) return true;
  return false;
}

bool has_veth(const pb::ContainerConfig& config) {
  return config.net().mode() == "veth" || config.net().mode() == "bridge";
}

std::string strip_prefix_len(const std::string& cidr) { return cidr.substr(0, cidr.find('/')); }

// ---- PID 1, before init -------------------------------------------------------------------

void make_dev_nodes(const fs::path& dev) {
  check_sys(::mount("tmpfs", dev.c_str(), "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k"), "mount tmpfs on {}",
            dev.string());
  struct Node {
    const char* name;
    unsigned major, minor;
  };
  for (const Node& n : {Node{"null", 1, 3}, Node{"zero", 1, 5}, Node{"full", 1, 7}, Node{"random", 1, 8},
                        Node{"urandom", 1, 9}, Node{"tty", 5, 0}}) {
    fs::path p = dev / n.name;
    check_sys(::mknod(p.c_str(), S_IFCHR | 0666, makedev(n.major, n.minor)), "mknod {}", p.string());
    ::chmod(p.c_str(), 0666);  // mknod honours the umask
  }
  ::mkdir((dev / "pts").c_str(), 0755);
  check_sys(::mount("devpts", (dev / "pts").c_str(), "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620"),
            "mount devpts on {}/pts", dev.string());
  check_sys(::symlink("pts/ptmx", (dev / "ptmx").c_str()), "symlink {}/ptmx", dev.string());
  ::mkdir((dev / "shm").c_str(), 01777);
  check_sys(::mount("shm", (dev / "shm").c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"), "mount {}/shm",
            dev.string());
}

// Binds a generated file (--net bridge: hosts, resolv.conf) over target, which is made when
// missing. A target that is a symlink is left alone: the link would be followed on the host.
void bind_file(const std::string& source, const fs::path& target) {
  if (source.empty()) return;
  std::error_code ec;
  if (fs::is_symlink(target, ec)) return;
  if (!fs::exists(target, ec)) {
    fs::create_directories(target.parent_path(), ec);
    UniqueFd made(::open(target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!made) fail_errno(errno, "create {} to bind {} over it", target.string(), source);
  }
  check_sys(::mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr), "bind {} over {}", source,
            target.string());
}

void setup_mounts(const pb::ContainerConfig& config) {
  // Mounts made in here must not propagate back to the host.
  check_sys(::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr), "make / rslave");
  if (config.rootfs().empty()) {
    check_sys(::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr), "mount private /proc");
    bind_file(config.net().hosts_file(), "/etc/hosts");
    apply_bind_mounts(config, "");
    return;
  }
  fs::path root = config.rootfs();
  bind_file(config.net().hosts_file(), root / "etc/hosts");
  bind_file(config.net().resolv_file(), root / "etc/resolv.conf");
  check_sys(::mount(root.c_str(), root.c_str(), nullptr, MS_BIND | MS_REC, nullptr), "bind-mount rootfs {}",
            root.string());
  ::mkdir((root / "proc").c_str(), 0555);
  check_sys(::mount("proc", (root / "proc").c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr),
            "mount proc on {}/proc", root.string());
  if (fs::is_directory(root / "dev")) make_dev_nodes(root / "dev");
  if (fs::is_directory(root / "sys")) {
    // A sysfs of our own shows our network namespace; read-only.
    ::mount("sysfs", (root / "sys").c_str(), "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  }
  apply_bind_mounts(config, root.string());
  check_sys(::chdir(root.c_str()), "chdir {}", root.string());
  check_sys(static_cast<int>(::syscall(SYS_pivot_root, ".", ".")), "pivot_root into {}", root.string());
  check_sys(::umount2(".", MNT_DETACH), "detach the old root");
  check_sys(::chdir("/"), "chdir /");
}

void setup_veth(const pb::ContainerConfig& config) {
  const auto& net = config.net();
  if (!has_veth(config)) return;
  if (net.mode() == "bridge") {
    // A MAC address derived from the IP address (02:42 and its four bytes): a container at an
    // address another one had (a restored one) is not mistaken for it by neighbour caches.
    const uint32_t ip = parse_ipv4(strip_prefix_len(net.ip_cidr()), "--ip");
    const unsigned char mac[6] = {0x02, 0x42, static_cast<unsigned char>(ip >> 24), static_cast<unsigned char>(ip >> 16),
                                  static_cast<unsigned char>(ip >> 8), static_cast<unsigned char>(ip)};
    net::set_mac(net.container_ifname(), mac);
  }
  net::add_address(net.container_ifname(), net.ip_cidr());
  net::set_link_up(net.container_ifname());
  net::add_default_route(net.container_ifname(), strip_prefix_len(net.host_ip()));
}

void setup_environment(const pb::ContainerConfig& config) {
  std::string term = std::getenv("TERM") ? std::getenv("TERM") : "";
  ::clearenv();
  ::setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  ::setenv("HOME", "/root", 1);
  ::setenv("HOSTNAME", config.hostname().c_str(), 1);
  if (!term.empty()) ::setenv("TERM", term.c_str(), 1);
  for (const auto& kv : config.env()) {
    size_t eq = kv.find('=');
    ::setenv(kv.substr(0, eq).c_str(), kv.substr(eq + 1).c_str(), 1);
  }
  if (!config.workdir().empty()) check_sys(::chdir(config.workdir().c_str()), "--workdir {}", config.workdir());
}

[[noreturn]] void pid1_main(const pb::ContainerConfig& config, const Stdio& stdio, int go_fd, int to_monitor,
                            const InitFunction& init, bool report_exec) {
  try {
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGHUP, SIG_DFL);
    ::signal(SIGPIPE, SIG_DFL);
    if (stdio.in != 0) check_sys(::dup2(stdio.in, 0), "dup2 stdin");
    if (stdio.out != 1) check_sys(::dup2(stdio.out, 1), "dup2 stdout");
    if (stdio.err != 2) check_sys(::dup2(stdio.err, 2), "dup2 stderr");
    for (int fd : {stdio.console.master.get(), stdio.console.slave.get(), stdio.console_peer.get(),
                   stdio.caller_console.get(), stdio.stdin_writer.get()})
      if (fd > 2) ::close(fd);
    if (config.tty()) take_console_as_controlling_terminal();
    const bool own_mnt = !shares_host_namespace(config, "mnt"), own_uts = !shares_host_namespace(config, "uts");
    int flags = 0;
    if (own_mnt) flags |= CLONE_NEWNS;
    if (own_uts) flags |= CLONE_NEWUTS;
    if (!shares_host_namespace(config, "ipc")) flags |= CLONE_NEWIPC;
    if (config.net().mode() != "host") flags |= CLONE_NEWNET;
    if (flags) check_sys(::unshare(flags), "unshare mount/uts/ipc/net namespaces");
    if (has_veth(config)) write_byte(to_monitor, 'N');  // the monitor adds the veth peer
    // While the caller makes our cgroup, set up what does not depend on it. (Nothing made
    // here is charged to the container's cgroup; none of the job's allocations happen before.)
    // With a rootfs, pivot_root would hide /sys/fs/cgroup from the join below: later then.
    // In the host's mount or UTS namespace, its mounts and its name are not ours to change.
    auto setup_inside = [&] {
      if (own_mnt) setup_mounts(config);
      if (own_uts)
        check_sys(::sethostname(config.hostname().data(), config.hostname().size()), "sethostname {}",
                  config.hostname());
      setup_environment(config);
    };
    if (config.net().mode() != "host") net::set_loopback_up();
    if (config.rootfs().empty()) setup_inside();
    // "G", then on v1 the cgroup's directories, one per line (see go_from_caller); nothing
    // when the caller or the monitor gave up.
    std::string go = read_to_end(go_fd);
    if (go.empty() || go[0] != 'G') ::_exit(1);
    std::map<std::string, std::string> v1_paths;
    std::istringstream lines(go.substr(1));
    for (std::string dir; std::getline(lines, dir);) v1_paths[dir] = dir;
    // We are single-threaded and fresh from fork: moving ourselves is the kernel's fast path
    // (Cgroup::join_self). On v2 the monitor has moved us.
    if (!v1_paths.empty()) Cgroup::open(CgroupDriver::V1, v1_paths).join_self();
    if (!config.rootfs().empty()) setup_inside();
    // In the cgroup now: make it the root of our cgroup namespace.
    check_sys(::unshare(CLONE_NEWCGROUP), "unshare cgroup namespace");
    setup_veth(config);  // the monitor has moved our end of the pair in
  } catch (const std::exception& e) {
    write_string(to_monitor, std::string("E") + e.what());
    ::_exit(1);
  }
  // Report our namespaces ourselves: a quick init may be gone before the monitor looks.
  std::string ready = "R";
  int ns_dir = ::open("/proc/self/ns", O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // one /proc walk, not six
  for (const char* ns : kNamespaces) {
    struct stat st {};
    if (ns_dir >= 0 && ::fstatat(ns_dir, ns, &st, 0) == 0) ready += fmt::format("{} {}\n", ns, st.st_ino);
  }
  if (ns_dir >= 0) ::close(ns_dir);
  // What the launcher mounted, to tell the job's own mounts from it at dump; without the
  // list a dump refuses the container. (In the host's mount namespace, none is the job's.)
  try {
    if (!shares_host_namespace(config, "mnt")) ready += own_mount_report();
  } catch (const std::exception&) {
  }
  write_string(to_monitor, ready);
  // With report_exec the pipe stays open (close-on-exec) into init: its end of file at the
  // exec is the monitor's "it runs", an "X<errno>" before it a failed exec (exec_argv).
  if (report_exec) g_exec_report = to_monitor;
  else ::close(to_monitor);
  ::close(go_fd);
  int rc = 1;
  try {
    rc = init();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stasis: container init failed: %s\n", e.what());
  }
  std::fflush(stdout);
  std::fflush(stderr);
  ::_exit(rc);
}

// Writes to a pipe whose reader may be gone: EPIPE is ignored, and SIGPIPE (blocked meanwhile)
// does not kill the caller.
void write_without_sigpipe(int fd, const std::string& data) {
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  try {
    write_all(fd, std::as_bytes(std::span(data.data(), data.size())), "pipe");
  } catch (const Error&) {
  }
  timespec zero{};
  while (::sigtimedwait(&pipe_only, nullptr, &zero) > 0) {
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

// ---- the monitor --------------------------------------------------------------------------

// Closes every fd from 3 up except those in keep.
void close_fds_except(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned from = 3;
  for (int fd : keep) {
    if (fd < 3) continue;
    if (static_cast<unsigned>(fd) > from) ::syscall(SYS_close_range, from, static_cast<unsigned>(fd) - 1, 0);
    from = static_cast<unsigned>(fd) + 1;
  }
  ::syscall(SYS_close_range, from, ~0U, 0);
}

bool read_oom_killed(const Cgroup& cgroup) {
  auto key = [](const fs::path& file, const std::string& want) -> long {
    std::error_code ec;
    if (!fs::exists(file, ec)) return -1;
    std::string text = read_file(file);
    size_t at = text.find(want + " ");
    return at == std::string::npos ? -1 : std::atol(text.c_str() + at + want.size() + 1);
  };
  try {
    const auto& paths = cgroup.paths();
    if (cgroup.driver() == CgroupDriver::V2) return key(fs::path(paths.at("unified")) / "memory.events", "oom_kill") > 0;
    if (!paths.count("memory")) return false;
    fs::path dir = paths.at("memory");
    long kills = key(dir / "memory.oom_control", "oom_kill");
    if (kills >= 0) return kills > 0;
    return std::atol(read_file(dir / "memory.failcnt").c_str()) > 0;  // older kernels: limit was hit
  } catch (const Error&) {
    return false;
  }
}

// "pid 4026531836\nmnt ...\n" as PID 1 reports it, then "M ID HASH" lines (its mounts).
void record_namespaces(pb::ContainerState& state, const std::string& report) {
  std::istringstream in(report);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("M ", 0) == 0) {  // own_mount_report
      state.add_launcher_mounts(line.substr(2));
      continue;
    }
    std::istringstream words(line);
    std::string ns;
    uint64_t inode = 0;
    if (words >> ns >> inode) (*state.mutable_namespace_inodes())[ns] = inode;
  }
}

// Removes what a container has on the host besides its processes.
void cleanup_resources(const StateStore& store, const pb::ContainerState& state) {
  if (has_veth(state.config()) && !state.config().net().host_ifname().empty()) {
    try {
      net::delete_link(state.config().net().host_ifname());
    } catch (const Error&) {
    }
  }
  bridge::release(store.root(), state.config());
  if (!state.cgroup_paths().empty()) {
    try {
      open_cgroup(state).destroy();
    } catch (const Error&) {
    }
  }
  // A dumped job's log lives on in the restored container.
  const std::string& log = state.config().log_path();
  if (state.status() != kStatusDumped && log == store.default_log_path(state.config().name()).string()) {
    ::unlink(log.c_str());
  }
}

// What lets PID 1 go on: "G", then on v1 the cgroup's directories, which it joins itself.
std::string go_message(const Cgroup& cgroup) {
  std::string go = "G";
  if (cgroup.driver() == CgroupDriver::V1)
    for (const auto& [controller, dir] : cgroup.paths()) go += dir + "\n";
  return go;
}

// The caller sends the container's state once its cgroup exists (see start_container), and
// closes the pipe without a word when it could not make it.
pb::ContainerState read_created_state(int from_caller) {
  std::string bytes = read_to_end(from_caller);
  ::close(from_caller);
  pb::ContainerState created;
  if (bytes.empty() || !created.ParseFromString(bytes)) fail("the caller gave up before the cgroup was made");
  return created;
}

// Who tells PID 1 to go on: the caller itself, as soon as the v1 cgroup exists (one process
// fewer to wake on the way), unless the monitor has work to do first: the v2 move, or the veth.
bool go_from_caller(const pb::ContainerConfig& config) {
  return parse_cgroup_driver(config.cgroup_driver()) == CgroupDriver::V1 && !has_veth(config);
}

[[noreturn]] void monitor_main(const StateStore& store, const pb::ContainerConfig& config, const Stdio& stdio,
                               int go_read, int go_write, int from_caller, int report_fd, const InitFunction& init,
                               StartMode mode) {
  pid_t pid = -1;
  pb::ContainerState created;
  std::optional<Cgroup> cgroup;
  int from_child[2] = {-1, -1};
  try {
    ::setsid();  // not in the terminal's process group: the caller forwards signals instead
    ::prctl(PR_SET_NAME, "stasis-monitor");
    ::signal(SIGINT, SIG_IGN);
    ::signal(SIGHUP, SIG_IGN);
    ::signal(SIGPIPE, SIG_IGN);
    check_sys(::pipe2(from_child, O_CLOEXEC), "pipe");
    // Our next child is PID 1 of a new PID namespace; fork() (not a raw clone) keeps glibc's
    // view of the child's thread consistent for whatever init runs.
    check_sys(::unshare(CLONE_NEWPID), "unshare PID namespace");
    pid = check_sys(::fork(), "fork the container's PID 1");
    if (pid == 0) {
      ::close(report_fd);
      ::close(from_caller);
      ::close(go_write);
      ::close(from_child[0]);
      pid1_main(config, stdio, go_read, from_child[1], init, mode.report_exec);
    }
    // PID 1 has the caller's fds (the restorer's may matter to its init); the monitor, which
    // lives as long as the container, must not keep the caller's pipes and sockets open.
    const bool monitor_says_go = !go_from_caller(config);
    close_fds_except({report_fd, from_caller, monitor_says_go ? go_write : -1, from_child[0],
                      stdio.console.master.get(), config.tty() ? stdio.owned_log.get() : -1,
                      stdio.console_peer.get(), stdio.stdin_writer.get()});
    auto expect = [&](char want, const char* step) {
      char c = read_byte(from_child[0]);
      if (c == want) return;
      if (c == 'E') fail("{}", read_to_end(from_child[0]));
      fail("container PID 1 (host pid {}) died while {}", pid, step);
    };
    // PID 1 creates its namespaces and mounts while the caller makes the cgroup. It runs
    // nothing of the job's before 'G'.
    created = read_created_state(from_caller);
    std::map<std::string, std::string> paths(created.cgroup_paths().begin(), created.cgroup_paths().end());
    cgroup.emplace(Cgroup::open(parse_cgroup_driver(config.cgroup_driver()), std::move(paths)));
    if (monitor_says_go) {
      if (cgroup->driver() == CgroupDriver::V2) {
        cgroup->add_process(pid);  // an RCU grace period (milliseconds): see cgroup_warmup.h
      }
      if (has_veth(config)) {
        expect('N', "creating its namespaces");
        if (mode.before_network) mode.before_network(pid);
        const auto& n = config.net();
        net::create_veth(n.host_ifname(), n.container_ifname(), pid);
        if (n.mode() == "bridge") {
          bridge::attach(config);
        } else {
          net::add_address(n.host_ifname(), n.host_ip());
          net::set_link_up(n.host_ifname());
        }
      }
      // PID 1 may have failed meanwhile: then its message, read next, says why.
      write_string(go_write, go_message(*cgroup));
      ::close(go_write);
    }
    expect('R', "setting up the container");
    // Until PID 1 closes its end: before init, or (report_exec) at the job's exec.
    std::string namespaces = read_to_end(from_child[0]);
    ::close(from_child[0]);
    if (size_t x = namespaces.find('X'); x != std::string::npos) {
      throw ExecFailed{std::atoi(namespaces.c_str() + x + 1)};
    }
    // Nobody else writes a "created" state: save ours without reading it back.
    pb::ContainerState running = created;
    running.set_status("running");
    running.set_monitor_pid(::getpid());
    running.set_init_pid(pid);
    record_namespaces(running, namespaces);
    {
      StateStore::Lock lock(store);
      store.save(running);
    }
  } catch (...) {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (has_veth(config)) {
      try {
        net::delete_link(config.net().host_ifname());
      } catch (const Error&) {
      }
    }
    try {
      throw;
    } catch (const ExecFailed& e) {
      write_string(report_fd, fmt::format("EXEC {}\n", e.err));
    } catch (const std::exception& e) {
      write_string(report_fd, std::string("ERR ") + e.what());
    } catch (...) {
      write_string(report_fd, "ERR unknown failure in the monitor");
    }
    ::_exit(1);
  }
  // -t: `stasis attach` right after `run -d` returns finds the socket.
  UniqueFd console_listener;
  if (has_attach_socket(config)) console_listener = listen_console(attach_socket_path(store.root(), config.name()));
  write_string(report_fd, "OK " + std::to_string(pid) + "\n");
  // A foreground caller waits for "EXIT <status>" on the same pipe (see wait_for_exit).
  if (config.detach()) ::close(report_fd);

  // From here on nobody reads our stdio: let go of the caller's terminal or pipes.
  int devnull = ::open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    if (devnull > 2) ::close(devnull);
  }

  int status = 0;
  if (has_attach_socket(config)) {
    ConsoleRelay relay{.master = stdio.console.master.get(),
                       .stdin_pipe = UniqueFd(stdio.stdin_writer.get()),
                       .log = config.tty() ? stdio.owned_log.get() : -1,
                       .first_client = UniqueFd(stdio.console_peer.get()),
                       .socket_path = attach_socket_path(store.root(), config.name()),
                       .listener = std::move(console_listener),
                       .interactive = config.interactive()};
    status = relay_console(std::move(relay), pid);
  } else {
    while (::waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) ::_exit(1);
    }
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  // Our children went to the job's PID namespace, which died with its PID 1: a fork there
  // fails (ENOMEM). The cleanup below forks (the nftables helper), so back to our own.
  if (int own = ::open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC); own >= 0) {
    ::setns(own, CLONE_NEWPID);
    ::close(own);
  }
  bool oom = !config.remove_on_exit() && read_oom_killed(*cgroup);  // --rm: nobody will ask
  try {
    if (config.remove_on_exit()) {
      StateStore::Lock lock(store);
      auto state = store.try_load(config.name());
      if (state) {
        cleanup_resources(store, *state);
        store.remove(config.name());
      }
    } else {
      store.update(config.name(), [&](pb::ContainerState& s) {
        s.set_status("exited");
        s.set_exit_code(WIFEXITED(status) ? WEXITSTATUS(status) : 0);
        s.set_exit_signal(WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        s.set_oom_killed(oom);
        s.set_exited_unix_ns(now_ns());
      });
    }
  } catch (const std::exception&) {
    // Nothing more to do: the status is still our exit code.
  }
  // The caller may return now, while the kernel still tears us down.
  if (!config.detach()) write_string(report_fd, "EXIT " + std::to_string(code) + "\n");
  ::_exit(code);
}

}  // namespace

InitFunction exec_init(const pb::ContainerConfig& config) {
  std::vector<std::string> argv(config.argv().begin(), config.argv().end());
  bool reaper = config.init();
  return [argv, reaper]() -> int {
    // The caller's other fds must not leak into the job.
    ::syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);
    return reaper ? run_reaper(argv, g_exec_report) : exec_argv(argv, g_exec_report);
  };
}

namespace {

StartedContainer start_impl(const fs::path& root, pb::ContainerConfig config, const InitFunction& init,
                            StartMode mode) {
  require_root("starting a container");
  validate_config(config);  // also resolves the cgroup driver "auto" to v1 or v2
  const CgroupDriver driver = parse_cgroup_driver(config.cgroup_driver());
  // Only v2 needs it: on v1 PID 1 joins its cgroup by itself, on the kernel's fast path.
  std::optional<CgroupMoveWarmup> warmup;
  if (driver == CgroupDriver::V2) warmup.emplace();
  if (!config.rootfs().empty()) config.set_rootfs(fs::canonical(config.rootfs()).string());
  const std::string name = config.name();
  StateStore store(root);
  // A -t job's output is copied to its log by the monitor, detached or not (`stasis logs`).
  if (config.log_path().empty() && (config.detach() || config.tty())) config.set_log_path(store.default_log_path(name).string());
  if (!config.log_path().empty()) config.set_log_path(fs::absolute(config.log_path()).string());

  pb::ContainerState state;
  *state.mutable_config() = config;
  state.set_status("created");
  state.set_created_unix_ns(now_ns());
  if (mode.mark) mode.mark(state);
  // Until the monitor reports success, a failure undoes everything made so far.
  bool committed = false, reserved = false, bridged = false;
  Stdio stdio;
  std::optional<Cgroup> cgroup;
  pid_t monitor = -1;
  UniqueFd to_monitor;  // the created state, once the cgroup exists; closed empty on failure
  struct Undo {
    std::function<void()> fn;
    ~Undo() { fn(); }
  } undo{[&] {
    if (committed) return;
    if (monitor > 0) {
      to_monitor.reset();  // a monitor still waiting for the state kills PID 1 and exits
      ::waitpid(monitor, nullptr, 0);
    }
    if (cgroup) {
      try {
        cgroup->kill_all();
        cgroup->destroy();
      } catch (const Error&) {
      }
    }
    if (reserved) {
      try {
        store.remove(name);
      } catch (const Error&) {
      }
    }
    if (bridged) bridge::release(root, config);
    if (stdio.created_log && config.log_path() == store.default_log_path(name).string()) {
      ::unlink(config.log_path().c_str());
    }
  }};

  CgroupLimits limits;
  limits.memory_max = config.memory_max();
  limits.cpus = config.cpus();
  if (config.cpu_period_us() > 0) limits.cpu_period_us = config.cpu_period_us();
  limits.pids_max = config.pids_max();
  limits.cpuset = config.cpuset();
  std::vector<std::string> devices(config.devices().begin(), config.devices().end());
  std::map<std::string, std::string> planned;
  {
    // One locked step: the name is checked and reserved.
    StateStore::Lock lock(store);
    if (store.try_load(name)) fail("a container named {} already exists under {}", name, root.string());
    if (config.net().mode() == "veth") {
      const auto& n = config.net();
      if (net::link_exists(n.host_ifname())) fail("network link {} already exists on the host", n.host_ifname());
      // Two links in one subnet would both route it, and the new one would not be reached.
      if (std::string other = net::link_in_subnet(n.host_ip()); !other.empty()) {
        fail("the subnet of --ip {} is already on the host's link {}: give container {} an address in another subnet",
             n.ip_cidr(), other, name);
      }
    }
    // The state names the cgroup's directories from the start: whoever removes the container
    // (an undo, `rm -f`) finds them, made or not yet.
    planned = with_context(fmt::format("cgroup of container {}", name),
                           [&] { return Cgroup::plan(driver, cgroup_parent_for(root), name, limits); });
    state.mutable_cgroup_paths()->insert(planned.begin(), planned.end());
    // The address and ports are leased and the state recording them saved under the bridge's
    // lock: a container started at the same time sees them taken.
    std::optional<bridge::Lock> bridge_lock;
    if (config.net().mode() == "bridge") {
      if (net::link_exists(config.net().host_ifname())) {
        fail("network link {} already exists on the host", config.net().host_ifname());
      }
      bridge_lock.emplace();
      bridge::reserve(*bridge_lock, root, config, mode.drop_taken_ports);
      bridged = true;
      bridge::write_files(root, config);
      *state.mutable_config() = config;
    }
    store.save(state);
    reserved = true;
  }
  stdio = plan_stdio(config, mode.fresh_log && config.log_path() == store.default_log_path(name).string());
  if (stdio.console.slave) state.set_console_path(stdio.console.slave_path);

  int report[2], created[2], go[2];
  check_sys(::pipe2(report, O_CLOEXEC), "pipe");
  UniqueFd report_read(report[0]), report_write(report[1]);
  check_sys(::pipe2(created, O_CLOEXEC), "pipe");
  UniqueFd created_read(created[0]);
  to_monitor.reset(created[1]);
  check_sys(::pipe2(go, O_CLOEXEC), "pipe");
  UniqueFd go_read(go[0]), go_write(go[1]);
  monitor = ::fork();
  if (monitor < 0) fail_errno(errno, "fork the monitor of container {}", name);
  if (monitor == 0) {
    report_read.reset();
    to_monitor.reset();
    monitor_main(store, config, stdio, go_read.release(), go_write.release(), created_read.release(),
                 report_write.release(), init, mode);
  }
  report_write.reset();
  created_read.reset();
  go_read.reset();
  if (!go_from_caller(config)) go_write.reset();
  // The cgroup is made while the monitor forks PID 1 and PID 1 makes its namespaces.
  cgroup = with_context(fmt::format("cgroup of container {}", name),
                        [&] { return Cgroup::create(driver, planned, limits, devices); });
  std::string created_state;
  if (!state.SerializeToString(&created_state)) fail("encode state of container {}", name);
  // A monitor that died early has told why on the report pipe, read next.
  write_without_sigpipe(to_monitor.get(), created_state);
  to_monitor.reset();
  if (go_write) {
    write_without_sigpipe(go_write.get(), go_message(*cgroup));
    go_write.reset();
  }

  std::string answer;
  pollfd pfd{report_read.get(), POLLIN, 0};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kStartTimeoutMs);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(monitor, SIGKILL);  // the undo reaps it
      fail("container {} did not start within {} s", name, kStartTimeoutMs / 1000);
    }
    int n = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    char buf[512];
    ssize_t r = ::read(report_read.get(), buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    answer.append(buf, static_cast<size_t>(r));
    if (answer.rfind("OK ", 0) == 0 && answer.find('\n') != std::string::npos) break;  // more comes at exit
  }
  if (answer.rfind("OK ", 0) != 0) {
    if (answer.rfind("EXEC ", 0) == 0) {
      int err = std::atoi(answer.c_str() + 5);
      throw Error(fmt::format("cannot execute '{}': {}", config.argv(0), std::strerror(err)),
                  exec_failure_status(err));
    }
    if (answer.rfind("ERR ", 0) == 0) {
      fail("start container {}: {}", name, answer.substr(4));
    }
    fail("start container {}: the monitor (pid {}) died without a word", name, monitor);
  }
  committed = true;
  StartedContainer started{name, static_cast<pid_t>(std::atoi(answer.c_str() + 3)), monitor, nullptr, nullptr};
  if (!config.detach()) started.exit_report = std::make_shared<UniqueFd>(std::move(report_read));
  if (stdio.caller_console) started.console = std::make_shared<UniqueFd>(std::move(stdio.caller_console));
  return started;
}

}  // namespace

StartedContainer start_container(const fs::path& root, pb::ContainerConfig config, InitFunction init,
                                 const std::function<void(pb::ContainerState&)>& mark,
                                 const std::function<void(pid_t)>& before_network) {
  return start_impl(root, std::move(config), init,
                    StartMode{.mark = mark, .drop_taken_ports = true, .before_network = before_network});
}

StartedContainer run_container(const fs::path& root, pb::ContainerConfig config) {
  InitFunction init = exec_init(config);
  // Detached, nobody would see an exec failure: the caller learns of it before returning. In
  // the foreground the job's own message and status (127/126) say it, with no wait here.
  StartMode mode{.report_exec = config.detach(), .fresh_log = true, .mark = {}};
  return start_impl(root, std::move(config), init, mode);
}

int wait_for_exit(const fs::path& root, const StartedContainer& container, bool reap_monitor) {
  if (container.exit_report && *container.exit_report) {
    // "EXIT <status>" from the monitor once the job is gone and cleaned up after.
    std::string said = read_to_end(container.exit_report->get());
    if (said.rfind("EXIT ", 0) == 0) {
      int code = std::atoi(said.c_str() + 5);
      if (reap_monitor) ::waitpid(container.monitor_pid, nullptr, 0);
      return code;
    }
  }
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(container.monitor_pid, &status, 0);
    if (r == container.monitor_pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      break;  // the monitor itself was killed: ask the state
    }
    if (errno == EINTR) continue;
    if (errno == ECHILD) break;
    fail_errno(errno, "wait for the monitor of container {} (pid {})", container.name, container.monitor_pid);
  }
  StateStore store(root);
  for (;;) {
    auto state = store.try_load(container.name);
    if (!state) return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
    if (state->status() == "exited") {
      return state->exit_signal() ? 128 + state->exit_signal() : state->exit_code();
    }
    if (!container_alive(*state)) return 1;
    ::usleep(20000);
  }
}

}  // namespace stasis::launcher
