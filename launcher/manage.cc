// Managing containers that exist: status, kill, freeze/thaw, exec, rm.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/error.h"
#include "common/file_util.h"
#include "launcher/bridge.h"
#include "common/log.h"
#include "launcher/container.h"
#include "launcher/console.h"
#include "launcher/network.h"
#include "launcher/reaper.h"
#include "launcher/state_store.h"

namespace stasis::launcher {

namespace fs = std::filesystem;

namespace {

// A process that exists and is not a zombie.
bool process_running(pid_t pid) {
  if (pid <= 0) return false;
  std::error_code ec;
  fs::path stat = fs::path("/proc") / std::to_string(pid) / "stat";
  if (!fs::exists(stat, ec)) return false;
  try {
    std::string text = read_file(stat);
    size_t paren = text.rfind(')');
    return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z' && text[paren + 2] != 'X';
  } catch (const Error&) {
    return false;
  }
}

// PID 1 of this container, checked by its PID namespace so a reused PID does not count.
bool init_running(const pb::ContainerState& state) {
  if (!process_running(state.init_pid())) return false;
  auto it = state.namespace_inodes().find("pid");
  if (it == state.namespace_inodes().end()) return true;
  struct stat st {};
  fs::path p = fs::path("/proc") / std::to_string(state.init_pid()) / "ns" / "pid";
  return ::stat(p.c_str(), &st) == 0 && st.st_ino == it->second;
}

bool is_live_status(const std::string& status) {
  return status == "running" || status == "frozen" || status == "created" || status == "restoring";
}

pb::ContainerState load_running(const StateStore& store, const std::string& name) {
  pb::ContainerState state = store.load(name);
  if (!is_live_status(state.status()) || !init_running(state)) {
    fail("container {} is not running ({})", name, display_status(state));
  }
  return state;
}

}  // namespace

void require_root(const std::string& what) {
  if (::geteuid() != 0) fail("{} needs root (running as uid {})", what, ::geteuid());
}

int parse_signal(const std::string& text) {
  if (text.empty()) throw UsageError("empty signal");
  if (std::isdigit(static_cast<unsigned char>(text[0]))) {
    size_t end = 0;
    int sig = 0;
    try {
      sig = std::stoi(text, &end);
    } catch (const std::exception&) {
      end = 0;
    }
    if (end != text.size() || sig < 1 || sig > SIGRTMAX) throw UsageError(fmt::format("invalid signal '{}'", text));
    return sig;
  }
  std::string upper;
  for (char c : text) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper.rfind("SIG", 0) == 0) upper = upper.substr(3);
  for (int sig = 1; sig < NSIG; ++sig) {
    const char* abbrev = ::sigabbrev_np(sig);
    if (abbrev && upper == abbrev) return sig;
  }
  throw UsageError(fmt::format("unknown signal '{}' (use a name such as TERM or KILL, or a number)", text));
}

std::string signal_name(int signal) {
  const char* abbrev = ::sigabbrev_np(signal);
  return abbrev ? std::string("SIG") + abbrev : std::to_string(signal);
}

Cgroup open_cgroup(const pb::ContainerState& state) {
  std::map<std::string, std::string> paths(state.cgroup_paths().begin(), state.cgroup_paths().end());
  if (paths.empty()) fail("container {} has no cgroup recorded", state.config().name());
  return Cgroup::open(state.config().cgroup_driver() == "v2" ? CgroupDriver::V2 : CgroupDriver::V1, std::move(paths));
}

bool container_alive(const pb::ContainerState& state) {
  return process_running(state.monitor_pid()) || init_running(state);
}

std::string display_status(const pb::ContainerState& state) {
  const std::string& status = state.status();
  // A restore in progress, or one that never finished (its restorer was killed): never
  // shown as a running job.
  if (!state.restored() && !state.checkpoint_dir().empty() && status != "created")
    return status == "exited" || !container_alive(state) ? "failed (restore did not finish)" : "restoring";
  if (status == "exited") {
    // The OOM killer SIGKILLs a task of the job; when that was PID 1 (or its death ended the
    // job: 137 from a shell), the job was OOM-killed; otherwise it survived one.
    bool died_of_kill = state.exit_signal() == SIGKILL || state.exit_code() == 128 + SIGKILL;
    if (state.oom_killed() && died_of_kill) return "oom-killed";
    std::string oom = state.oom_killed() ? ", after an oom kill" : "";
    if (state.exit_signal()) return fmt::format("killed ({}{})", signal_name(state.exit_signal()), oom);
    return fmt::format("exited ({}{})", state.exit_code(), oom);
  }
  if (status == "running" || status == "frozen") {
    if (!init_running(state) && !process_running(state.monitor_pid())) return "dead (monitor gone)";
    try {
      if (!state.cgroup_paths().empty() && open_cgroup(state).frozen()) return "frozen";
    } catch (const Error&) {
    }
    return "running";
  }
  return status;
}

void set_container_status(const fs::path& root, const std::string& name, const std::string& status) {
  StateStore store(root);
  if (!store.update(name, [&](pb::ContainerState& s) {
        s.set_status(status);
        if (status == "exited" && s.exited_unix_ns() == 0) {
          s.set_exited_unix_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
        }
      })) {
    fail("no container named {} under {}", name, root.string());
  }
}

void kill_container(const fs::path& root, const std::string& name, int signal) {
  require_root("stasis kill");
  StateStore store(root);
  pb::ContainerState state = load_running(store, name);
  check_sys(::kill(state.init_pid(), signal), "kill container {} (pid {}) with {}", name, state.init_pid(),
            signal_name(signal));
  // A frozen job only takes a fatal signal once thawed, which the user asked for by killing it.
  if (signal == SIGKILL && state.status() == "frozen") {
    open_cgroup(state).thaw();
    store.update(name, [](pb::ContainerState& s) { if (s.status() == "frozen") s.set_status("running"); });
  }
}

namespace {

// Polls the state until the job has ended: its exit recorded, its state gone (--rm), or nothing
// of it left alive. False at the deadline.
bool wait_ended(const StateStore& store, const std::string& name, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto state = store.try_load(name);
    if (!state || state->status() == "exited" || !container_alive(*state)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

void stop_container(const fs::path& root, const std::string& name, std::chrono::milliseconds grace) {
  require_root("stasis stop");
  StateStore store(root);
  pb::ContainerState state = store.load(name);
  if (!is_live_status(state.status()) || !container_alive(state)) return;  // already stopped
  if (init_running(state)) {
    // PID 1 of a PID namespace ignores signals it has no handler for: a job that does not
    // handle SIGTERM ends with the SIGKILL after the grace period, as under docker.
    ::kill(state.init_pid(), SIGTERM);
    if (state.status() == "frozen" || display_status(state) == "frozen") {
      open_cgroup(state).thaw();
      store.update(name, [](pb::ContainerState& s) { if (s.status() == "frozen") s.set_status("running"); });
    }
  }
  if (wait_ended(store, name, std::chrono::steady_clock::now() + grace)) return;
  log::debug("container {} still runs {} ms after SIGTERM: SIGKILL", name, grace.count());
  if (!state.cgroup_paths().empty()) {
    try {
      open_cgroup(state).kill_all();
    } catch (const Error&) {
      if (init_running(state)) throw;  // else it ended meanwhile (--rm removed the cgroup)
    }
  }
  if (init_running(state)) ::kill(state.init_pid(), SIGKILL);
  if (!wait_ended(store, name, std::chrono::steady_clock::now() + std::chrono::seconds(10))) {
    fail("container {}: still running 10 s after SIGKILL (monitor {}, init {})", name, state.monitor_pid(),
         state.init_pid());
  }
}

int wait_container(const fs::path& root, const std::string& name) {
  StateStore store(root);
  store.load(name);  // "no container named ..."
  for (;;) {
    auto state = store.try_load(name);
    if (!state) fail("container {} was removed (--rm or rm) before its exit status could be read", name);
    if (state->status() == "exited") return state->exit_signal() ? 128 + state->exit_signal() : state->exit_code();
    if (!container_alive(*state)) {
      fail("container {} is {}: no exit status was recorded", name, display_status(*state));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

pb::ContainerState state_for_display(pb::ContainerState state) {
  state.set_name(state.config().name());
  state.set_display_status(display_status(state));
  return state;
}

void freeze_container(const fs::path& root, const std::string& name) {
  require_root("stasis freeze");
  StateStore store(root);
  pb::ContainerState state = load_running(store, name);
  open_cgroup(state).freeze();
  store.update(name, [](pb::ContainerState& s) { if (s.status() == "running") s.set_status("frozen"); });
}

void thaw_container(const fs::path& root, const std::string& name) {
  require_root("stasis thaw");
  StateStore store(root);
  pb::ContainerState state = load_running(store, name);
  open_cgroup(state).thaw();
  store.update(name, [](pb::ContainerState& s) { if (s.status() == "frozen") s.set_status("running"); });
}

void remove_container(const fs::path& root, const std::string& name, bool force, bool keep_log) {
  require_root("stasis rm");
  StateStore store(root);
  auto found = store.try_load(name);
  // The dump's removal of the job it killed races the monitor of a --rm container, which
  // removes the container itself as the job dies: gone already is then no error.
  if (!found && keep_log) return;
  pb::ContainerState state = found ? std::move(*found) : store.load(name);  // load names what is missing
  if (container_alive(state)) {
    if (!force) fail("container {} is running ({}): stop it first or use 'rm -f'", name, display_status(state));
    if (!state.cgroup_paths().empty()) {
      try {
        open_cgroup(state).kill_all();
      } catch (const Error&) {
        // Once PID 1 is gone, the monitor of a --rm container removes the cgroup under us.
        if (init_running(state)) throw;
      }
    }
    if (init_running(state)) ::kill(state.init_pid(), SIGKILL);
    // The monitor records the exit; let it finish so it does not write after we remove.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (container_alive(state)) {
      if (std::chrono::steady_clock::now() > deadline) {
        fail("container {}: its processes (monitor {}, init {}) did not end within 10 s", name, state.monitor_pid(),
             state.init_pid());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  StateStore::Lock lock(store);
  auto current = store.try_load(name);
  if (!current) return;  // --rm got there first
  const auto& netcfg = current->config().net();
  if ((netcfg.mode() == "veth" || netcfg.mode() == "bridge") && !netcfg.host_ifname().empty()) {
    net::delete_link(netcfg.host_ifname());
  }
  bridge::release(root, current->config());
  if (!current->cgroup_paths().empty()) open_cgroup(*current).destroy();
  if (!keep_log && current->config().log_path() == store.default_log_path(name).string()) {
    ::unlink(current->config().log_path().c_str());
  }
  ::unlink(attach_socket_path(root, name).c_str());  // a -t monitor that was killed left it
  store.remove(name);
}

int exec_in_container(const fs::path& root, const std::string& name, const std::vector<std::string>& argv) {
  require_root("stasis exec");
  if (argv.empty()) throw UsageError("missing command: use 'stasis exec NAME CMD [ARGS...]'");
  StateStore store(root);
  pb::ContainerState state = load_running(store, name);
  if (display_status(state) == "frozen") fail("container {} is frozen: thaw it first", name);
  Cgroup cgroup = open_cgroup(state);
  pid_t init = state.init_pid();

  // Open everything first, from the host's view, so errors come before any fork.
  struct NsFd {
    const char* name;
    int type;
    UniqueFd fd;
  };
  std::vector<NsFd> namespaces;
  for (auto [ns, type] : {std::pair{"cgroup", CLONE_NEWCGROUP}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},
                          {"net", CLONE_NEWNET}, {"pid", CLONE_NEWPID}, {"mnt", CLONE_NEWNS}}) {
    fs::path p = fs::path("/proc") / std::to_string(init) / "ns" / ns;
    namespaces.push_back({ns, type, open_or_throw(p, O_RDONLY)});
  }
  UniqueFd root_fd = open_or_throw(fs::path("/proc") / std::to_string(init) / "root", O_RDONLY | O_DIRECTORY);
  std::string workdir = state.config().workdir().empty() ? "/" : state.config().workdir();
  if (state.config().workdir().empty() && state.config().rootfs().empty()) {
    // Same as run on the host file system: PID 1's working directory.
    std::error_code ec;
    fs::path cwd = fs::read_symlink(fs::path("/proc") / std::to_string(init) / "cwd", ec);
    if (!ec) workdir = cwd.string();
  }

  pid_t helper = check_sys(::fork(), "fork for exec into {}", name);
  if (helper == 0) {
    // Joins the cgroup and namespaces, then forks the command into the PID namespace.
    try {
      cgroup.join_self();  // we are a fresh single-threaded fork
      for (auto& ns : namespaces) {
        check_sys(::setns(ns.fd.get(), ns.type), "setns into the {} namespace of pid {}", ns.name, init);
      }
      check_sys(::fchdir(root_fd.get()), "fchdir to the root of pid {}", init);
      check_sys(::chroot("."), "chroot into the root of pid {}", init);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "stasis exec: %s\n", e.what());
      ::_exit(1);
    }
    pid_t child = ::fork();
    if (child < 0) {
      std::perror("stasis exec: fork");
      ::_exit(1);
    }
    if (child == 0) {
      ::clearenv();
      ::setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
      ::setenv("HOME", "/root", 1);
      ::setenv("HOSTNAME", state.config().hostname().c_str(), 1);
      for (const auto& kv : state.config().env()) {
        size_t eq = kv.find('=');
        ::setenv(kv.substr(0, eq).c_str(), kv.substr(eq + 1).c_str(), 1);
      }
      if (::chdir(workdir.c_str()) != 0) ::chdir("/");
      int rc = exec_argv(argv);
      ::_exit(rc);
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
  int status = 0;
  while (::waitpid(helper, &status, 0) < 0) {
    if (errno != EINTR) fail_errno(errno, "wait for exec helper {}", helper);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace stasis::launcher
