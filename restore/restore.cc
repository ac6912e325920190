#include "restore/restore.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <unistd.h>

#include <chrono>
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
#include "restore/signals.h"
#include "restore/stub.h"

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
                                     const RestoreOptions& options, const RestorePlan& plan,
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
  // PID 1 is the job itself, or our init when the job had another PID.
  config.set_init(plan.task.pid() != 1);
  return config;
}

}  // namespace

int restore_checkpoint(const RestoreOptions& options) {
  using images::ImageType;
  const auto started_at = Clock::now();
  // Until the job runs; then a foreground restore passes signals on to it, as `run` does.
  std::optional<InterruptGuard> interrupt_guard(std::in_place);
  const auto check_interrupt = [] { check_interrupted("restore", "nothing was left behind"); };

  // Everything is read and checked before anything is created, but the data of the page
  // files: their headers are checked now, each chunk's data as it goes into the job (from the
  // very copy that was checked), and the job runs only once every chunk has passed.
  images::Checkpoint checkpoint = images::Checkpoint::open(options.dir);
  images::refuse_pre_dump(checkpoint);  // memory only (images/page_chain.h)
  checkpoint.verify(images::Checkpoint::PageData::Later);
  log::debug("checkpoint {} verified in {:.1f} ms", options.dir.string(), ms_since(started_at));
  auto tree = images::read_all<pb::TaskEntry>(checkpoint.path(ImageType::Pstree), ImageType::Pstree);
  if (tree.empty()) fail("{}: pstree.img lists no process", options.dir.string());
  if (tree.size() > 1)
    throw UnsupportedError(fmt::format("{}: the checkpoint holds {} processes; restoring a tree of processes is not supported",
                                       options.dir.string(), tree.size()));
  RestorePlan plan = make_plan(options.dir, load_task_image(checkpoint, tree[0]), load_file_images(checkpoint));
  // Sources above the stub's own fds, so that it can move them into place without clobbering.
  std::vector<InheritedEnd> inherited =
      open_inherited_ends(options.inherit_fds, plan.files, plan.inherited_fd(options.inherit_fds.size()) + 1);
  for (size_t i = 0; i < inherited.size(); ++i) {
    plan.inherited_source_fds.push_back(inherited[i].fd.get());
    plan.files.inherited_pipes[inherited[i].pipe_id] = plan.inherited_fd(i);
  }
  plan.pages = checkpoint.open_pages(plan.task.pid());
  plan.parent_pages = images::open_parent_pages(checkpoint, plan.task.pid(), *plan.pages);  // a chain's
  pb::ContainerConfig dumped;
  images::read_single(checkpoint.path(ImageType::Container), ImageType::Container, dumped);
  launcher::StateStore store(options.root);
  launcher::RestoredLog job_log(store, dumped, options.name.empty() ? dumped.name() : options.name, options.log_path);
  pb::ContainerConfig config = container_config(dumped, checkpoint, options, plan, job_log);
  check_host_compatible(checkpoint, plan);
  plan.mounts = load_mounts(checkpoint);  // first: the checks below find files through them
  check_mount_sources(plan.mounts, config.rootfs());
  check_files_unchanged(plan, config.rootfs());
  check_open_files(plan, config.rootfs(), options.allow_changed_files);
  const double load_ms = ms_since(started_at);
  check_interrupt();

  int control[2];
  if (pipe2(control, O_CLOEXEC) < 0) fail_errno(errno, "create the restore control pipe");
  UniqueFd control_read(control[0]), control_write(control[1]);
  const int stub_fd = control_write.get();
  const int restorer_fd = control_read.get();
  const bool own_pid_1 = plan.task.pid() == 1;
  launcher::InitFunction init = [&plan, stub_fd, restorer_fd, own_pid_1]() -> int {
    // Only the restorer may hold the read end: the stub takes its closing for the restorer's death.
    ::close(restorer_fd);
    if (own_pid_1) run_stub(plan, stub_fd);
    return run_restore_init(plan, stub_fd);
  };

  const auto start_at = Clock::now();
  // The checkpoint is in the state from the start and `restored` only at the end: until then
  // `ps` shows "restoring", and a restore killed half way "failed (restore did not finish)"
  // once its half-built job is gone, never a running job.
  const std::string checkpoint_dir = std::filesystem::absolute(options.dir).string();
  launcher::StartedContainer started = launcher::start_container(
      options.root, config, init, [&](pb::ContainerState& state) { state.set_checkpoint_dir(checkpoint_dir); },
      [&plan](pid_t init_pid) { lock_network(plan.files, init_pid); });
  ContainerRollback rollback(options.root, started.name, job_log.taken_over());
  control_write.reset();
  inherited.clear();  // the stub has its own copies: the job alone holds the sources now
  StubReport report = read_stub_report(control_read.get(), started.init_pid, 30000);
  const pid_t stub_pid = own_pid_1 ? started.init_pid : find_stub_under_init(started.init_pid, 5000);
  HeldSegments held_segments = restore_namespace_contents(checkpoint, started.init_pid);
  check_bound_addresses(plan.files, started.init_pid);
  const double start_ms = ms_since(start_at);

  const auto rebuild_at = Clock::now();
  const pid_t pid = plan.task.pid();
  // Under seccomp, the filters come back before we are done: our injected calls must pass them
  // (the threads created from the leader inherit the option).
  const unsigned long suspend = uses_seccomp(plan.task.core) ? PTRACE_O_SUSPEND_SECCOMP : 0;
  auto leader = ptrace::SeizedThread::seize(stub_pid, PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | suspend);
  leader.interrupt_and_wait();
  MemoryStats memory;
  std::vector<RestoredThread> threads;
  double memory_ms = 0;
  with_context(fmt::format("restore pid {} (host pid {})", pid, stub_pid), [&] {
    Remote remote(leader, stub_pid, report.code_page);
    unregister_stub_rseq(remote);
    const auto memory_at = Clock::now();
    memory = restore_memory(remote, plan);
    held_segments.release();  // the job holds its segments now
    memory_ms = ms_since(memory_at);
    fault_point("restore-after-memory");
    check_interrupt();
    threads = create_threads(remote, plan);
    restore_seccomp(remote, threads, plan.task.core);
    for (auto& t : threads) {
      const pb::ThreadCore& core = thread_core(plan.task.core, t.ns_tid);
      Remote thread_remote(t.thread, stub_pid, report.code_page);
      restore_thread_state(thread_remote, core);
      restore_thread_signals(thread_remote, plan.task.signals, pid, t.ns_tid);
      restore_creds(thread_remote, plan.task.core.creds());
      restore_thread_attributes(thread_remote, t.host_tid, core);
      thread_remote.finish();
      set_thread_cpu_state(t.thread, core);
    }
    restore_thread_state(remote, plan.task.core.threads(0));
    restore_thread_signals(remote, plan.task.signals, pid, pid);
    restore_process_signals(remote, plan.task.signals, pid);
    restore_posix_timers(remote, plan.task.signals);
    restore_file_locks(remote, plan.task.fds);
    restore_creds(remote, plan.task.core.creds());
    restore_dumpable(remote, plan.task.core);
    restore_thread_attributes(remote, stub_pid, plan.task.core.threads(0));
    restore_late_process_attributes(remote, stub_pid, plan.task.core);
    remote.call_checked("close (the stub's end of the control pipe)", SYS_close,
                        static_cast<uint64_t>(plan.control_fd()));
    remote.finish();
    fault_point("restore-before-finish");
    check_interrupt();
    finish_leader(leader, report.code_page, plan.task.core.threads(0));
    for (const auto& t : threads) restore_thread_scheduling(t.host_tid, thread_core(plan.task.core, t.ns_tid));
    restore_thread_scheduling(stub_pid, plan.task.core.threads(0));
  });
  // Every thread has its final registers: the job is whole from here, even if we die before
  // the detach (the kernel lets the threads go then), so the state says so first.
  store.update(started.name, [&](pb::ContainerState& state) { state.set_restored(true); });
  // Let it go: every thread resumes where it was dumped.
  for (auto& t : threads) t.thread.detach();
  leader.detach();
  remove_network_lock(plan.files, stub_pid);  // the dump's, if it left one
  rollback.dismiss();
  job_log.commit();
  const double rebuild_ms = ms_since(rebuild_at);

  log::info("restored {} as container {} (pid {} in its namespace, host pid {}, {} threads)", options.dir.string(),
            started.name, pid, stub_pid, plan.task.core.threads_size());
  log::info("restore took {:.1f} ms: load {:.1f}, start {:.1f}, rebuild {:.1f} (memory {:.1f}: {} VMAs, {} MiB written)",
            ms_since(started_at), load_ms, start_ms, rebuild_ms, memory_ms, memory.vmas,
            memory.bytes_written >> 20);
  if (options.detach) return 0;
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

}  // namespace stasis::restore
