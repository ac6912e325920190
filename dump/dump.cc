#include "dump/dump.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "cgroup.pb.h"
#include "common/cgroup.h"
#include "common/compat.h"
#include "common/fd.h"
#include "common/error.h"
#include "common/fault.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/progress.h"
#include "container.pb.h"
#include "dump/background_copy.h"
#include "dump/cgroup_state.h"
#include "dump/core.h"
#include "dump/dir_claim.h"
#include "dump/files.h"
#include "dump/incremental.h"
#include "dump/inject.h"
#include "dump/ipc.h"
#include "dump/mounts.h"
#include "common/interrupt.h"
#include "dump/memory.h"
#include "dump/mm_attributes.h"
#include "dump/namespaces.h"
#include "dump/net.h"
#include "dump/pre_dump.h"
#include "dump/pstree.h"
#include "dump/seize.h"
#include "dump/signals.h"
#include "dump/volumes.h"
#include "images/checkpoint.h"
#include "images/image_file.h"
#include "images/image_type.h"
#include "launcher/container.h"
#include "launcher/state_store.h"

namespace stasis::dump {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using images::ImageType;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Removes the checkpoint directory unless the dump completed.
class PartialDirectory {
 public:
  explicit PartialDirectory(fs::path dir) : dir_(std::move(dir)) {}
  ~PartialDirectory() {
    if (dir_.empty()) return;
    std::error_code ec;
    fs::remove_all(dir_, ec);
    if (ec) log::error("could not remove the partial checkpoint {}: {}", dir_.string(), ec.message());
    else log::debug("removed the partial checkpoint {}", dir_.string());
  }
  void commit() { dir_.clear(); }

 private:
  fs::path dir_;
};

pid_t tgid_of(pid_t tid) {
  auto status = proc::read_status(tid);
  if (!status.fields.count("Tgid")) fail("/proc/{}/status: no Tgid line", tid);
  return status.tgid;
}

// Children of every thread of pid (/proc/PID/task/*/children), sorted, without repeats.
std::vector<pid_t> children_of_process(pid_t pid) {
  std::vector<pid_t> out;
  for (pid_t tid : proc::list_tasks(pid)) {
    std::vector<pid_t> children;
    try {
      children = proc::list_children(pid, tid);
    } catch (const Error&) {
      continue;  // the thread exited meanwhile
    }
    out.insert(out.end(), children.begin(), children.end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<std::string> read_cmdline(pid_t pid) {
  std::string text = read_file(fmt::format("/proc/{}/cmdline", pid));
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\0', start);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Fds 0-2 of a container's job that are the plumbing `stasis run` gave PID 1: /dev/null or
// the caller's stdin, the log file or the caller's stdout/stderr (see launcher/container.h).
std::vector<InheritedFd> container_stdio(pid_t pid, const pb::ContainerConfig& config) {
  std::vector<InheritedFd> out;
  for (int fd = 0; fd <= 2; ++fd) {
    std::string link;
    try {
      link = proc::read_fd_link(pid, fd);
    } catch (const Error&) {
      continue;  // closed
    }
    bool plumbing = false;
    if (fd == 0) plumbing = link == "/dev/null" || link.front() != '/' || link.rfind("/dev/pts/", 0) == 0;
    else
      plumbing = (!config.log_path().empty() && link == config.log_path()) || link.front() != '/' ||
                 link.rfind("/dev/pts/", 0) == 0;
    if (plumbing) out.push_back({fd, static_cast<uint64_t>(fd)});
  }
  return out;
}

// What the pages to save come to, about (for the progress line): the job's private and shared
// memory in /proc/PID/smaps_rollup; 0 when unreadable.
uint64_t saved_memory_estimate(pid_t pid) {
  uint64_t kib = 0;
  try {
    std::istringstream in(read_file(fmt::format("/proc/{}/smaps_rollup", pid)));
    for (std::string key; in >> key;) {
      uint64_t value = 0;
      if ((key == "Anonymous:" || key == "Pss_Shmem:") && in >> value) kib += value;
    }
  } catch (const Error&) {
  }
  return kib << 10;
}

pb::ContainerConfig synthesize_config(pid_t pid, const std::string& hostname, const std::string& cwd) {
  pb::ContainerConfig c;
  for (auto& a : read_cmdline(pid)) c.add_argv(a);
  c.set_workdir(cwd);
  c.set_hostname(hostname);
  c.mutable_net()->set_mode("host");
  c.set_init(true);
  c.set_cgroup_driver(cgroup_driver_name(detect_cgroup_driver()));
  return c;
}

// SIGKILLs the seized processes and reaps our ptrace links to them (bounded), so that their
// real parent can reap them. Round robin over all threads: under --init, PID 1 (our reaper)
// waits in the kernel for the job to be reaped, which needs our link to the job gone first.
void kill_seized(std::vector<ptrace::SeizedThread>& threads, const std::vector<pid_t>& processes) {
  std::vector<UniqueFd> pidfds;
  for (pid_t p : processes) pidfds.emplace_back(compat::sys_pidfd_open(p, 0));
  for (pid_t p : processes) ::kill(p, SIGKILL);
  // Free the memory from here while the job exits on another CPU (best effort: the kernel may
  // have freed it already).
  for (const auto& fd : pidfds)
    if (fd) compat::sys_process_mrelease(fd.get(), 0);
  std::vector<pid_t> left;
  for (auto& t : threads) {
    left.push_back(t.tid());
    t.release();
  }
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!left.empty()) {
    for (auto it = left.begin(); it != left.end();) {
      int status = 0;
      pid_t r = ::waitpid(*it, &status, __WALL | WNOHANG);
      // ECHILD: not ours to reap any more; an exit: our link is gone.
      if (r < 0 || (r == *it && (WIFEXITED(status) || WIFSIGNALED(status)))) it = left.erase(it);
      else ++it;
    }
    if (left.empty()) break;
    if (Clock::now() > deadline) {
      log::warn("{} thread(s) did not exit within 10 s of SIGKILL (first: tid {})", left.size(), left.front());
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Freezes the cgroup again when destroyed (unless released), so that a paused container stays
// paused whatever the outcome of its dump. Declared after the seized threads, it runs while
// they are still in their ptrace-stops: they never run their own code on the way.
class Refreeze {
 public:
  explicit Refreeze(const Cgroup& cgroup) : cgroup_(cgroup) {}
  ~Refreeze() {
    if (!active_) return;
    try {
      cgroup_.freeze();
    } catch (const Error& e) {
      log::error("could not freeze the paused container again: {}", e.what());
    }
  }
  Refreeze(const Refreeze&) = delete;
  Refreeze& operator=(const Refreeze&) = delete;
  void release() { active_ = false; }

 private:
  const Cgroup& cgroup_;
  bool active_ = true;
};

// Whether threads may be let go while the freezer holds them. The v2 freezer counts a thread
// in a ptrace-stop as frozen and traps it again on its way out. The v1 freezer (the kernel's
// task freezer) saves the ptrace-stop state, and a detach wakes the thread through that saved
// state only since Linux 6.7 ("freezer,sched: Use saved_state to reduce some spurious
// wakeups"): before, the thaw would put it back in a ptrace-stop with no tracer, for good.
// There the cgroup is frozen right after the detach, and the job runs for that moment.
bool can_refreeze_before_detach(CgroupDriver driver) {
  if (fault_active("dump-refreeze-after-detach")) return false;
  if (driver == CgroupDriver::V2) return true;
  utsname u{};
  int major = 0, minor = 0;
  if (::uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 7);
}

template <typename Message>
void write_one(const images::Checkpoint& ckpt, ImageType type, std::optional<int64_t> id, const Message& m) {
  images::write_single(ckpt.path(type, id), type, m);
}

}  // namespace

DumpReport dump(const DumpOptions& opt) {
  if (opt.pre_dump) return pre_dump(opt);  // dump/pre_dump.h
  DumpReport report;
  auto t_start = Clock::now();
  InterruptGuard interrupt_guard;

  // --- the target
  std::optional<pb::ContainerState> state;
  std::optional<Cgroup> cgroup;
  if (!opt.container.empty()) {
    launcher::StateStore store(opt.state_root);
    state = store.load(opt.container);
    // A paused container ("frozen") is dumped too, and left paused (see Refreeze).
    if ((state->status() != "running" && state->status() != "frozen") || !launcher::container_alive(*state))
      fail("container {} is not running (status: {})", opt.container, launcher::display_status(*state));
    cgroup = launcher::open_cgroup(*state);
  } else {
    if (opt.pid <= 0) throw UsageError(fmt::format("--pid {}: not a process id", opt.pid));
    if (!fs::exists(fmt::format("/proc/{}", opt.pid))) fail("no process with pid {}", opt.pid);
    if (opt.pid == ::getpid() || opt.pid == ::getppid()) fail("pid {} is stasis itself or its parent", opt.pid);
  }

  // Claimed first: a dump that loses the race for the directory leaves it alone.
  DirectoryClaim claim(opt.dir);
  images::Checkpoint ckpt = images::Checkpoint::create(opt.dir);
  claim.mark_unfinished();
  PartialDirectory partial(opt.dir);

  // --- freeze: every thread seized and in a ptrace-stop
  NetSysctlDefaults net_defaults = start_reading_net_defaults();  // meanwhile, not while frozen
  auto t_freeze = Clock::now();
  // A paused container is frozen again before its threads are let go (refreeze, declared
  // after them) where the kernel allows it, and in any case right after (refreeze_late,
  // declared before them: also for a seize that fails half way, which lets them go itself).
  const bool was_paused = cgroup && cgroup->frozen();
  // Should we die, the guardian leaves the cgroup as we found it (declared first: it says
  // goodbye only after the refreezes below).
  std::optional<Guardian> guardian;
  if (cgroup) guardian.emplace(*cgroup, was_paused);
  std::optional<Refreeze> refreeze_late;
  if (was_paused) refreeze_late.emplace(*cgroup);
  Task task;
  std::vector<ptrace::SeizedThread> all = cgroup ? seize_cgroup(*cgroup, *guardian) : seize_process(opt.pid);
  std::optional<Refreeze> refreeze;
  if (was_paused && can_refreeze_before_detach(cgroup->driver())) refreeze.emplace(*cgroup);
  report.freeze_s = since(t_freeze);
  check_interrupted("dump", "the job was left running");

  // Group threads by process. Under --init, PID 1 is our reaper: not part of the job.
  std::map<pid_t, std::vector<size_t>> by_process;
  for (size_t i = 0; i < all.size(); ++i) by_process[tgid_of(all[i].tid())].push_back(i);
  std::vector<pid_t> processes;
  for (auto& [p, _] : by_process) processes.push_back(p);
  std::vector<pid_t> job = processes;
  if (state && state->config().init()) job.erase(std::remove(job.begin(), job.end(), state->init_pid()), job.end());
  std::string what = state ? fmt::format("container {}", opt.container) : fmt::format("pid {}", opt.pid);
  if (!state) {
    auto children = children_of_process(opt.pid);
    if (!children.empty()) {
      std::vector<pid_t> tree{opt.pid};
      tree.insert(tree.end(), children.begin(), children.end());
      refuse_process_tree(tree, what);
    }
  }
  refuse_process_tree(job, what);
  if (job.empty()) fail("{}: no process of the job to dump", what);

  task.host_pid = job.front();
  {
    auto& idx = by_process[task.host_pid];
    // Leader first.
    std::stable_partition(idx.begin(), idx.end(), [&](size_t i) { return all[i].tid() == task.host_pid; });
    for (size_t i : idx) task.threads.push_back(std::move(all[i]));
    std::vector<ptrace::SeizedThread> rest;
    for (auto& t : all)
      if (t.tid() > 0) rest.push_back(std::move(t));
    all = std::move(rest);  // threads of processes we hold but do not dump (the --init reaper)
  }
  pid_t pid = task.host_pid;
  report.host_pid = pid;
  report.threads = task.threads.size();

  // --- collect
  auto t_collect = Clock::now();
  pb::TaskCore core;
  pb::SignalState signals;
  std::vector<pb::FdEntry> fds;
  FileCollector files(opt.ghost_limit, opt.leave_running);
  files.inet().set_options(opt.tcp_established, opt.leave_running);
  pb::NamespaceState namespaces;
  std::vector<pb::IpcObject> ipc;
  std::optional<pb::NetState> net;
  MountsDump mounts;
  pb::CgroupState cgroup_state;
  pb::ContainerConfig config;
  uint64_t brk = 0;
  pb::MmAttributes mm_attributes;
  with_context(fmt::format("dump pid {}", pid), [&] {
    fill_namespace_ids(task);
    report.ns_pid = task.ns_pid;
    // Files first: the usual reason to refuse (a socket) is found before anything is injected.
    if (state) refuse_files_in_volumes(pid, state->config());
    if (state) files.set_console(state->console_path());
    fds = files.collect(pid, state ? container_stdio(pid, state->config()) : std::vector<InheritedFd>{});
    files.mark_outside_pipes();
    {
      Injector injector(pid, task.threads[0], task.threads.size());
      core = collect_core(task, injector);
      signals = collect_signals(task, injector);
      brk = static_cast<uint64_t>(injector.call_checked(task.threads[0], "brk(0)", SYS_brk, 0));
      mm_attributes = collect_mm_attributes(task, injector);
      injector.unmap();  // before the memory layout is read
    }
    namespaces = collect_namespaces(pid);
    ipc = collect_ipc(pid, namespaces);
    net = collect_net(pid, namespaces, state ? &state->config() : nullptr, net_defaults);
    mounts = collect_mounts(pid, namespaces, state ? &*state : nullptr, opt.tmpfs_limit);
    if (state) {
      cgroup_state = collect_cgroup_state(cgroup->driver(), cgroup->paths());
      config = state->config();
      // The job is stopped: its output so far, for a copy restored beside it (restored_log.h).
      struct stat log_stat {};
      if (!config.log_path().empty() && ::stat(config.log_path().c_str(), &log_stat) == 0)
        config.set_log_bytes_at_dump(log_stat.st_size);
    } else {
      CgroupDriver driver = detect_cgroup_driver();
      cgroup_state = collect_cgroup_state(driver, cgroup_paths_of(pid, driver));
      config = synthesize_config(pid, namespaces.hostname(), core.cwd());
      if (net) config.mutable_net()->set_mode("loopback");  // a network namespace of its own, net.img's contents
      // A job in a root of its own: its working directory is a path there (restored with it).
      if (!mounts.mounts.empty() && mounts.mounts.front().root()) config.clear_workdir();
    }
  });
  report.collect_s = since(t_collect);
  check_interrupted("dump", "the job was left running");
  report.fds = fds.size();
  report.sigactions = static_cast<size_t>(signals.actions_size());

  // --- memory
  auto t_memory = Clock::now();
  pb::MmState mm;
  IncrementalDump incremental(opt, pid, task.ns_pid);  // --parent, dirty tracking (dump/incremental.h)
  std::unique_ptr<BackgroundCopy> background;          // --leave-running: pages copied after the thaw
  auto record_memory = [&](const MemoryStats& ms) {
    report.pages = ms.pages;
    report.vmas_dumped = ms.vmas_dumped;
    report.scan_s = ms.scan_seconds;
    report.read_s = ms.read_seconds;
    report.encode_s = ms.encode_seconds;
    report.pagemap_scan = ms.pagemap_scan;
    report.page_write_s = ms.write_seconds;
    report.wait_s = ms.wait_seconds;
  };
  with_context(fmt::format("dump pid {}", pid), [&] {
    const PageTracking* tracking = incremental.tracking();
    if (opt.leave_running && !tracking) background = BackgroundCopy::open(task);  // dump/background_copy.h
    mm = collect_mm(pid, brk);
    *mm.mutable_attributes() = mm_attributes;
    // On a terminal, a line that says how far the pages are (common/progress.h).
    progress::Display display("dump: memory", [pid] { return saved_memory_estimate(pid); });
    record_memory(background ? background->protect(mm, opt.dir, task.ns_pid, opt.compression)
                             : dump_pages(pid, mm, opt.dir, task.ns_pid, opt.compression, tracking));
  });
  report.vmas = static_cast<size_t>(mm.vmas_size());
  report.memory_s = since(t_memory);
  check_interrupted("dump", "the job was left running");

  // --- write
  auto t_write = Clock::now();
  {
    images::ImageWriter pstree(ckpt.path(ImageType::Pstree), ImageType::Pstree);
    pstree.write(task_entry(task));
    pstree.close();
  }
  write_one(ckpt, ImageType::Core, task.ns_pid, core);
  write_one(ckpt, ImageType::Signals, task.ns_pid, signals);
  write_one(ckpt, ImageType::Mm, task.ns_pid, mm);
  {
    images::ImageWriter w(ckpt.path(ImageType::Fds, task.ns_pid), ImageType::Fds);
    for (const auto& e : fds) w.write(e);
    w.close();
  }
  files.write_images(opt.dir);
  write_one(ckpt, ImageType::Namespaces, std::nullopt, namespaces);
  write_ipc(ckpt, ipc);
  write_net(ckpt, net);
  write_mounts(ckpt, mounts);
  write_one(ckpt, ImageType::Cgroup, std::nullopt, cgroup_state);
  write_one(ckpt, ImageType::Container, std::nullopt, config);

  pb::Inventory inventory;
  inventory.set_root_pid(task.ns_pid);
  inventory.set_root_host_pid(pid);
  inventory.set_container_name(opt.container);
  inventory.set_compression(std::string(images::compression_name(opt.compression)));
  inventory.set_page_size(static_cast<uint32_t>(::sysconf(_SC_PAGESIZE)));
  incremental.fill_inventory(inventory);

  if (opt.leave_running) {
    // Resume the job as soon as everything is read; checksumming the files needs no job. A
    // paused one is frozen again first.
    refreeze.reset();
    task.threads.clear();
    all.clear();
    refreeze_late.reset();
    report.frozen_s = since(t_freeze);
    if (background && background->deferred())
      with_context(fmt::format("dump pid {}", pid), [&] { record_memory(background->copy()); });
    if (background) report.memory_note = background->summary();
    ckpt.finalize(std::move(inventory));
    partial.commit();
    claim.complete();
    incremental.finish();
  } else {
    ckpt.finalize(std::move(inventory));
    partial.commit();
    claim.complete();
    incremental.finish();
    // Only now, with a complete checkpoint on disk, is the job killed. Its log stays for the
    // restored job: the monitor (under --rm) and the removal below leave it.
    if (refreeze) refreeze->release();
    if (refreeze_late) refreeze_late->release();
    if (state) launcher::set_container_status(opt.state_root, opt.container, launcher::kStatusDumped);
    for (auto& t : task.threads) all.push_back(std::move(t));
    task.threads.clear();
    auto t_kill = Clock::now();
    files.inet().hand_over_to_kill();  // connections closed in repair mode, the network lock kept
    kill_seized(all, processes);
    all.clear();
    log::debug("killed the job in {:.3f}s", since(t_kill));
    report.frozen_s = since(t_freeze);
    report.killed = true;
    if (state) {
      try {
        auto t_remove = Clock::now();
        launcher::remove_container(opt.state_root, opt.container, /*force=*/true, /*keep_log=*/true);
        log::debug("removed container {} in {:.3f}s", opt.container, since(t_remove));
      } catch (const Error& e) {
        // (A --rm container its monitor removed first is no error: remove_container says so.)
        throw Error(fmt::format("the checkpoint in {} is complete and the job was killed, but removing container {} "
                                "failed: {}",
                                opt.dir.string(), opt.container, e.what()),
                    e.exit_code());
      }
    }
  }
  report.write_s = since(t_write);
  report.total_s = since(t_start);
  return report;
}

std::string format_report(const DumpOptions& opt, const DumpReport& r) {
  std::string target = opt.container.empty() ? fmt::format("pid {}", r.host_pid)
                                             : fmt::format("container {} (pid {})", opt.container, r.host_pid);
  double mib = static_cast<double>(r.pages.raw_bytes) / (1 << 20);
  std::string out = fmt::format("dumped {} into {}: {} thread(s), {} vma(s) ({} with pages), {} fd(s), {} signal action(s)\n",
                                target, opt.dir.string(), r.threads, r.vmas, r.vmas_dumped, r.fds, r.sigactions);
  out += fmt::format("  pages: {} ({} zero), {:.1f} MiB raw, {:.1f} MiB stored ({})\n", r.pages.pages,
                     r.pages.zero_pages, mib, static_cast<double>(r.pages.stored_bytes) / (1 << 20),
                     images::compression_name(opt.compression));
  if (r.pages.parent_pages)
    out += fmt::format("  {} unchanged page(s) ({:.1f} MiB) left to the parent checkpoint {}\n", r.pages.parent_pages,
                       static_cast<double>(r.pages.parent_pages * 4096) / (1 << 20), opt.parent.string());
  out += fmt::format("  freeze {:.3f}s, collect {:.3f}s, memory {:.3f}s, write {:.3f}s; frozen {:.3f}s, total {:.3f}s\n",
                     r.freeze_s, r.collect_s, r.memory_s, r.write_s, r.frozen_s, r.total_s);
  if (log::level() <= log::Level::Debug)
    out += fmt::format(
        "  memory detail (three threads): scan {:.3f}s ({}), read {:.3f}s (waited {:.3f}s), encode {:.3f}s, write "
        "{:.3f}s\n",
        r.scan_s, r.pagemap_scan ? "PAGEMAP_SCAN" : "/proc/PID/pagemap", r.read_s, r.wait_s, r.encode_s,
        r.page_write_s);
  if (!r.memory_note.empty()) out += "  " + r.memory_note + "\n";
  out += r.killed ? "  the job was killed" + std::string(opt.container.empty() ? "" : " and the container removed") + "\n"
                  : "  the job was left running\n";
  return out;
}

}  // namespace stasis::dump
