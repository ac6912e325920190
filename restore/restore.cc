#include "restore/restore.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <optional>

#include "cgroup.pb.h"
#include "common/error.h"
#include "common/fault.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "container.pb.h"
#include "images/checkpoint.h"
#include "images/image_file.h"
#include "images/page_chain.h"
#include "launcher/container.h"
#include "launcher/restored_log.h"
#include "launcher/state_store.h"
#include "namespaces.pb.h"
#include "restore/cgroup_state.h"
#include "restore/checks.h"
#include "restore/core.h"
#include "restore/creds.h"
#include "restore/inherit_fds.h"
#include "restore/inet_multicast.h"
#include "restore/inet_sockets.h"
#include "restore/terminals.h"
#include "restore/init.h"
#include "restore/file_locks.h"
#include "restore/memory.h"
#include "restore/mounts.h"
#include "restore/namespaces.h"
#include "restore/posix_timers.h"
#include "restore/process.h"
#include "restore/seccomp.h"
#include "restore/sibling.h"
#include "restore/signals.h"
#include "restore/rebuild.h"
#include "restore/stub.h"
#include "restore/tree.h"

namespace stasis::restore {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Removes the half-built container (its processes, cgroup, links, state, and its log unless
// keep_log: a log taken over from the dumped container stays) unless dismissed.
class ContainerRollback {
 public:
  ContainerRollback(std::filesystem::path root, std::string name, bool keep_log)
      : root_(std::move(root)), name_(std::move(name)), keep_log_(keep_log) {}
  ~ContainerRollback() {
    if (dismissed_) return;
    try {
      launcher::remove_container(root_, name_, /*force=*/true, keep_log_);
    } catch (const std::exception& e) {
      log::error("cleaning up the half-restored container {}: {}", name_, e.what());
    }
  }
  void dismiss() { dismissed_ = true; }

 private:
  std::filesystem::path root_;
  std::string name_;
  bool keep_log_;
  bool dismissed_ = false;
};

// The network of the restored container: its own host link (named after it, so that a copy
// can run beside the original), and the addresses of --ip/--host-ip when given.
void adapt_network(pb::ContainerConfig& config, const RestoreOptions& options) {
  auto* net = config.mutable_net();
  if (net->mode() == "bridge") {
    // Back on the bridge at the dumped address and ports, or a new address (a copy beside the
    // original); a host port the original still holds is left out (launcher/bridge.h).
    if (!options.host_ip.empty()) throw UsageError("--host-ip does not apply to a container on --net bridge");
    net->clear_host_ifname();
    if (!options.ip.empty()) net->set_ip_cidr(options.ip);
    return;
  }
  if (net->mode() != "veth") {
    if (!options.ip.empty() || !options.host_ip.empty())
      throw UsageError(fmt::format("--ip and --host-ip only apply to a container run with --net veth (this one: {})",
                                   net->mode().empty() ? "loopback" : net->mode()));
    return;
  }
  net->clear_host_ifname();  // validate_config names it after the container
  if (!options.ip.empty()) {
    net->set_ip_cidr(options.ip);
    if (options.host_ip.empty()) net->clear_host_ip();  // the new subnet's first address
  }
  if (!options.host_ip.empty()) net->set_host_ip(options.host_ip);
}

pb::ContainerConfig container_config(const pb::ContainerConfig& dumped, const images::Checkpoint& checkpoint,
                                     const RestoreOptions& options, const RestoreTree& tree,
                                     const launcher::RestoredLog& job_log) {
  using images::ImageType;
  pb::ContainerConfig config = dumped;
  if (checkpoint.exists(ImageType::Namespaces)) {
    pb::NamespaceState ns;
    images::read_single(checkpoint.path(ImageType::Namespaces), ImageType::Namespaces, ns);
    if (!ns.hostname().empty()) config.set_hostname(ns.hostname());
  }
  apply_cgroup_state(checkpoint, config);  // the limits its cgroup had at the dump
  share_host_namespaces(checkpoint, config);
  if (!options.name.empty()) config.set_name(options.name);
  config.set_detach(options.detach);
  config.set_log_path(job_log.path());
  adapt_network(config, options);
  // PID 1 is the job's first process itself, or our init when the job had another PID.
  config.set_init(!tree.own_pid_1());
  // A terminal made outside the job (dump --shell-job) comes back as a -t job's: a new one,
  // its master the monitor's, to attach to.
  if (tree.processes.front().files.console && !config.tty()) {
    config.set_tty(true);
    config.set_interactive(true);
  }
  return config;
}

// Step 1: every image read, and checked but for the page data (checked as it goes in).
struct Loaded {
  images::Checkpoint checkpoint;
  pb::ContainerConfig dumped;
  RestoreTree tree;
  std::vector<InheritedEnd> inherited;
};

Loaded load_and_check(const RestoreOptions& options, const SiblingOptions* sibling = nullptr) {
  using images::ImageType;
  images::Checkpoint checkpoint = images::Checkpoint::open(options.dir);
  images::refuse_pre_dump(checkpoint);  // memory only (images/page_chain.h)
  checkpoint.verify(images::Checkpoint::PageData::Later);
  pb::ContainerConfig dumped;
  images::read_single(checkpoint.path(ImageType::Container), ImageType::Container, dumped);
  const std::string rootfs_of_dump = dumped.rootfs();
  FileImages files = load_file_images(checkpoint);
  RestoreTree tree = load_tree(checkpoint, files, static_cast<int>(options.inherit_fds.size()));
  RestorePlan& root = tree.processes.front();
  root.mounts = load_mounts(checkpoint);  // first: the checks below find files through them
  if (sibling) relocate_mounts(root.mounts, sibling->root, sibling->external_mounts);
  check_mount_sources(root.mounts, rootfs_of_dump);
  // Sources above the stubs' own fds, so that PID 1 can move them into place without clobbering.
  std::vector<InheritedEnd> inherited = open_inherited_ends(options.inherit_fds, root.files, tree.top_fd() + 1);
  // The files every process reopens by path are checked once (they are the tree's).
  check_open_files(root, rootfs_of_dump, options.allow_changed_files);
  for (size_t i = 0; i < inherited.size(); ++i) {
    root.inherited_source_fds.push_back(inherited[i].fd.get());
    root.files.inherited_pipes[inherited[i].pipe_id] = root.inherited_fd(i);
  }
  for (auto& plan : tree.processes) {
    if (&plan != &root) plan.files = root.files;  // with what the checks accepted
    plan.pages = checkpoint.open_pages(plan.task.pid());
    plan.parent_pages = images::open_parent_pages(checkpoint, plan.task.pid(), *plan.pages);  // a chain's
    check_host_compatible(checkpoint, plan);
    // Through the job's mounts, which only the root's plan holds (PID 1 makes them).
    if (&plan != &root) std::swap(plan.mounts, root.mounts);
    check_files_unchanged(plan, rootfs_of_dump);
    if (&plan != &root) std::swap(plan.mounts, root.mounts);
  }
  return {std::move(checkpoint), std::move(dumped), std::move(tree), std::move(inherited)};
}

// The pipe every stub reports on; PID 1 of the new container runs the root's stub or our init.
struct ControlPipe {
  UniqueFd read_end, write_end;
};

ControlPipe make_control_pipe() {
  int control[2];
  if (pipe2(control, O_CLOEXEC) < 0) fail_errno(errno, "create the restore control pipe");
  return {UniqueFd(control[0]), UniqueFd(control[1])};
}

launcher::InitFunction pid_1_of(const RestoreTree& tree, const ControlPipe& control) {
  const int stub_fd = control.write_end.get();
  const int restorer_fd = control.read_end.get();
  return [&tree, stub_fd, restorer_fd]() -> int {
    // Only the restorer may hold the read end: the stubs take its closing for the restorer's death.
    ::close(restorer_fd);
    if (tree.own_pid_1()) run_stub(tree, 0, stub_fd);
    return run_restore_init(tree, stub_fd);
  };
}

// Every stub's report, and the host pid of each process (by its pid in the namespace).
struct Stubs {
  std::vector<StubReport> reports;
  std::map<pid_t, pid_t> host_pids;
};

Stubs wait_for_stubs(const RestoreTree& tree, const ControlPipe& control, pid_t init_pid) {
  Stubs stubs;
  stubs.reports = read_stub_reports(control.read_end.get(), init_pid, tree.processes.size(), 30000);
  stubs.host_pids = find_host_pids(init_pid, tree.processes.size() - tree.own_pid_1(), 5000);
  if (tree.own_pid_1()) stubs.host_pids[1] = init_pid;
  return stubs;
}

struct Timings {
  double load_ms = 0, start_ms = 0, rebuild_ms = 0, total_ms = 0;
};

void log_restored(const RestoreOptions& options, const std::string& name, const std::vector<ProcessRestore>& processes,
                  const Timings& t) {
  MemoryStats memory;
  double memory_ms = 0;
  size_t threads = 0;
  for (const auto& p : processes) {
    memory.vmas += p.memory.vmas;
    memory.bytes_written += p.memory.bytes_written;
    memory_ms += p.memory_ms;
    threads += static_cast<size_t>(p.plan->task.core.threads_size());
  }
  log::info("restored {} as container {} (pid {} in its namespace, host pid {}, {} process(es), {} threads)",
            options.dir.string(), name, processes.front().plan->task.pid(), processes.front().host_pid,
            processes.size(), threads);
  log::info("restore took {:.1f} ms: load {:.1f}, start {:.1f}, rebuild {:.1f} (memory {:.1f}: {} VMAs, {} MiB written)",
            t.total_ms, t.load_ms, t.start_ms, t.rebuild_ms, memory_ms, memory.vmas, memory.bytes_written >> 20);
}

// A foreground restore passes SIGINT, SIGTERM and SIGHUP on to the job, as `run` does, and
// returns its status.
int wait_in_foreground(const RestoreOptions& options, const pb::ContainerConfig& config,
                       const launcher::StartedContainer& started, std::optional<InterruptGuard>& interrupt_guard) {
  // From catching to passing on without a gap; a signal caught after the last check goes on too.
  sigset_t forwarded, old_mask;
  sigemptyset(&forwarded);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&forwarded, sig);
  sigprocmask(SIG_BLOCK, &forwarded, &old_mask);
  interrupt_guard.reset();
  forward_signals_to(started.init_pid);
  if (int sig = interrupted_by()) ::kill(started.init_pid, sig);
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  if (attach_restored_console(started, config.interactive())) return 0;  // -t: detached by the user
  return launcher::wait_for_exit(options.root, started);
}

}  // namespace

int restore_checkpoint(const RestoreOptions& options) {
  const auto started_at = Clock::now();
  Timings timings;
  // Until the job runs; then a foreground restore passes signals on to it, as `run` does.
  std::optional<InterruptGuard> interrupt_guard(std::in_place);
  const auto check_interrupt = [] { check_interrupted("restore", "nothing was left behind"); };

  // 1. Load and check everything before anything is created.
  Loaded loaded = load_and_check(options);
  const RestoreTree& tree = loaded.tree;
  launcher::StateStore store(options.root);
  launcher::RestoredLog job_log(store, loaded.dumped, options.name.empty() ? loaded.dumped.name() : options.name,
                                options.log_path);
  pb::ContainerConfig config = container_config(loaded.dumped, loaded.checkpoint, options, tree, job_log);
  timings.load_ms = ms_since(started_at);
  check_interrupt();

  // 2. Start the container, whose PID 1 (the root's stub, or our init) creates every stub.
  // The checkpoint is in the state from the start and `restored` only at the end: until then
  // `ps` shows "restoring", and a restore killed half way "failed (restore did not finish)"
  // once its half-built job is gone, never a running job.
  const auto start_at = Clock::now();
  ControlPipe control = make_control_pipe();
  const std::string checkpoint_dir = std::filesystem::absolute(options.dir).string();
  launcher::StartedContainer started =
      launcher::start_container(options.root, config, pid_1_of(tree, control),
                                [&](pb::ContainerState& state) { state.set_checkpoint_dir(checkpoint_dir); },
                                // The dump's network lock, in the new namespace before its links come up.
                                [&tree](pid_t init_pid) { lock_network(tree.processes.front().files, init_pid); });
  ContainerRollback rollback(options.root, started.name, job_log.taken_over());
  control.write_end.reset();
  loaded.inherited.clear();  // the stubs have their own copies: the job alone holds the sources now

  // 3. Every stub made its process's files and reported; the namespaces get their contents.
  const Stubs stubs = wait_for_stubs(tree, control, started.init_pid);
  HeldSegments held_segments = restore_namespace_contents(loaded.checkpoint, started.init_pid);
  check_bound_addresses(tree.processes.front().files, started.init_pid);
  rejoin_multicast_groups(tree, stubs.host_pids, started.init_pid);
  resume_connection_attempts(tree, stubs.host_pids);
  timings.start_ms = ms_since(start_at);

  // 4-7. Each process rebuilt from outside on both CPUs, each worker seizing, rebuilding and
  // letting go its share, all held until the last is whole.
  const auto rebuild_at = Clock::now();
  std::vector<ProcessRestore> processes = rebuild_tree(
      tree, stubs.reports, stubs.host_pids, std::max(1u, std::thread::hardware_concurrency()), check_interrupt, [&] {
        held_segments.release();  // the job holds its segments now
        // Every thread has its final registers: the job is whole from here, even if we die
        // before the detach (the kernel lets the threads go then), so the state says so first.
        store.update(started.name, [&](pb::ContainerState& state) { state.set_restored(true); });
      });
  remove_network_lock(tree.processes.front().files, processes.front().host_pid);  // the dump's, if it left one
  rollback.dismiss();
  job_log.commit();
  timings.rebuild_ms = ms_since(rebuild_at);
  timings.total_ms = ms_since(started_at);
  log_restored(options, started.name, processes, timings);
  if (options.detach) return 0;
  return wait_in_foreground(options, config, started, interrupt_guard);
}

pid_t restore_as_sibling(const RestoreOptions& options, const SiblingOptions& sibling) {
  const auto started_at = Clock::now();
  std::optional<InterruptGuard> interrupt_guard(std::in_place);
  const auto check_interrupt = [] { check_interrupted("restore", "nothing was left behind"); };
  const auto notify = [&](const std::string& stage, pid_t pid) {
    if (sibling.notify) sibling.notify(stage, pid);
  };

  Loaded loaded = load_and_check(options, &sibling);
  // A terminal made outside the job: PID 1 makes a new one and sends its master here, for the
  // client (SiblingOptions::terminal_master).
  UniqueFd terminal_socket, pid_1_terminal_socket;
  if (loaded.tree.processes.front().files.console) {
    if (!sibling.terminal_master)
      throw UnsupportedError(fmt::format("{}: the job's terminal was made outside it (a console), and the client does "
                                         "not take the master of a new one (orphan_pts_master unset)",
                                         options.dir.string()));
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
      fail_errno(errno, "socketpair for the job's new terminal");
    terminal_socket.reset(pair[0]);
    const UniqueFd made(pair[1]);
    // Above every slot PID 1 moves fds into (and apart from the --inherit-fd sources, open already).
    pid_1_terminal_socket.reset(::fcntl(made.get(), F_DUPFD_CLOEXEC, loaded.tree.top_fd() + 1));
    if (!pid_1_terminal_socket) fail_errno(errno, "move the socket for the job's new terminal above fd {}", loaded.tree.top_fd());
    loaded.tree.terminal_socket = pid_1_terminal_socket.get();
  }
  const RestoreTree& tree = loaded.tree;
  const int ns_flags = sibling_namespace_flags(loaded.checkpoint);
  check_interrupt();

  ControlPipe control = make_control_pipe();
  SiblingInit pid_1(ns_flags, pid_1_of(tree, control));
  const pid_t pid = pid_1.pid();
  control.write_end.reset();
  pid_1_terminal_socket.reset();  // PID 1 has it
  // As the launcher's monitor does before the links come up, and before any stub runs.
  lock_network(tree.processes.front().files, pid);
  notify("setup-namespaces", pid);  // runc runs the prestart hooks now
  notify("post-setup-namespaces", pid);
  pid_1.go();
  loaded.inherited.clear();  // the stubs have their own copies

  const Stubs stubs = wait_for_stubs(tree, control, pid);
  UniqueFd terminal_master;
  if (terminal_socket) terminal_master = receive_terminal_master(terminal_socket.get());
  HeldSegments held_segments = restore_namespace_contents(loaded.checkpoint, pid);
  check_bound_addresses(tree.processes.front().files, pid);
  rejoin_multicast_groups(tree, stubs.host_pids, pid);
  resume_connection_attempts(tree, stubs.host_pids);
  std::vector<ProcessRestore> processes = rebuild_tree(
      tree, stubs.reports, stubs.host_pids, std::max(1u, std::thread::hardware_concurrency()), check_interrupt, [&] {
        held_segments.release();
        if (terminal_master) sibling.terminal_master(terminal_master.get());
        // Whole and still stopped: runc takes PID 1's pid here, as from CRIU.
        notify("post-restore", pid);
        notify("network-unlock", pid);
        notify("pre-resume", pid);
      });
  pid_1.dismiss();  // it runs: a failure from here on is the client's to handle
  remove_network_lock(tree.processes.front().files, processes.front().host_pid);
  log::info("restored {} as PID 1 host pid {}, a child of pid {} ({} process(es)) in {:.1f} ms", options.dir.string(),
            pid, ::getppid(), processes.size(), ms_since(started_at));
  notify("post-resume", pid);
  return pid;
}

}  // namespace stasis::restore
