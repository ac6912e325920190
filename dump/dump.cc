#include "dump/dump.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <map>
#include <memory>
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
#include "common/work_pool.h"
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
#include "dump/tree.h"
#include "dump/seize.h"
#include "dump/signals.h"
#include "dump/terminals.h"
#include "dump/volumes.h"
#include "images/checkpoint.h"
#include "images/image_file.h"
#include "images/image_type.h"
#include "inventory.pb.h"
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


// What is dumped: a container (its state and cgroup) or a host process and its subtree.
struct Target {
  std::optional<pb::ContainerState> state;
  std::optional<Cgroup> cgroup;
  std::string what;  // for messages
};

Target open_target(const DumpOptions& opt) {
  Target target;
  if (!opt.container.empty()) {
    launcher::StateStore store(opt.state_root);
    target.state = store.load(opt.container);
    // A paused container ("frozen") is dumped too, and left paused (see Refreeze).
    if ((target.state->status() != "running" && target.state->status() != "frozen") ||
        !launcher::container_alive(*target.state))
      fail("container {} is not running (status: {})", opt.container, launcher::display_status(*target.state));
    target.cgroup = launcher::open_cgroup(*target.state);
    target.what = fmt::format("container {}", opt.container);
  } else {
    if (opt.pid <= 0) throw UsageError(fmt::format("--pid {}: not a process id", opt.pid));
    if (!fs::exists(fmt::format("/proc/{}", opt.pid))) fail("no process with pid {}", opt.pid);
    if (opt.pid == ::getpid() || opt.pid == ::getppid()) fail("pid {} is stasis itself or its parent", opt.pid);
    target.what = fmt::format("pid {}", opt.pid);
  }
  return target;
}

// Every thread of the job, in its ptrace-stop. A container whose job is starting a program
// (vfork, then exec) can be caught between the two, its parent unable to stop: we let go and
// try again a moment later.
std::vector<ptrace::SeizedThread> seize_job(const Target& target, const DumpOptions& opt,
                                           std::optional<Guardian>& guardian) {
  if (!target.cgroup) return seize_subtree(opt.pid);
  for (int attempt = 1;; ++attempt) {
    try {
      return seize_cgroup(*target.cgroup, *guardian);
    } catch (const SeizeBusy& e) {
      if (attempt == 20) throw Error(fmt::format("{}: {} at each of {} tries; dump again", target.what, e.what(), attempt));
      log::debug("{}: {}; seizing again", target.what, e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(10 * attempt));
    }
  }
}

std::vector<pid_t> processes_of(const std::vector<ptrace::SeizedThread>& threads) {
  std::vector<pid_t> out;
  for (const auto& t : threads) out.push_back(tgid_of(t.tid()));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// The processes to dump: all that were seized but, under --init, PID 1 (our reaper).
std::vector<pid_t> job_of(const Target& target, std::vector<pid_t> processes) {
  if (target.state && target.state->config().init())
    processes.erase(std::remove(processes.begin(), processes.end(), target.state->init_pid()), processes.end());
  return processes;
}

// The fds of pid that are the container's stdio plumbing: for the job's first process (or
// PID 1 of the container), its fds 0-2 that container_stdio recognizes; for every process,
// any fd that is the same open file description as one of those (kcmp), as a child that
// inherited its stdout has.
class Plumbing {
 public:
  Plumbing(const Target& target, const DumpTree& tree) {
    if (!target.state) return;
    const bool init = target.state->config().init();
    reference_pid_ = init ? target.state->init_pid() : tree.root().task.host_pid;
    reference_ = container_stdio(reference_pid_, target.state->config());
  }
  std::vector<InheritedFd> of(pid_t pid) const {
    if (pid == reference_pid_) return reference_;
    std::vector<InheritedFd> out;
    if (reference_.empty()) return out;
    for (int fd : proc::list_fds(pid))
      for (const auto& ref : reference_)
        if (compat::sys_kcmp(reference_pid_, pid, KCMP_FILE, static_cast<unsigned long>(ref.fd),
                             static_cast<unsigned long>(fd)) == 0) {
          out.push_back({fd, ref.std_fd});
          break;
        }
    return out;
  }

 private:
  pid_t reference_pid_ = 0;
  std::vector<InheritedFd> reference_;
};

// The memory side of each process, in tree order: --parent and dirty tracking
// (dump/incremental.h), and with --leave-running the copy after the thaw
// (dump/background_copy.h; null where the pages are copied while the job is stopped).
struct MemoryPlan {
  std::vector<pid_t> pids;
  std::string dump_id = new_dump_id();  // one for all the processes
  std::vector<std::unique_ptr<IncrementalDump>> incremental;
  std::vector<std::unique_ptr<BackgroundCopy>> background;
};

// Files, core, signals and mm of every process; the open files go to one collector, so that
// a file shared between processes is described once.
void collect_processes(DumpTree& tree, FileCollector& files, const Target& target, const DumpOptions& opt,
                       MemoryPlan& memory) {
  const Plumbing plumbing(target, tree);
  for (auto& p : tree.processes) {
    const pid_t pid = p.task.host_pid;
    with_context(fmt::format("dump pid {}", pid), [&] {
      // Files first: the usual reason to refuse (a socket) is found before anything is injected.
      if (target.state) refuse_files_in_volumes(pid, target.state->config());
      p.fds = files.collect(pid, plumbing.of(pid));
    });
  }
  files.mark_outside_pipes();
  std::map<pid_t, pid_t> pid_in_job;
  for (const auto& p : tree.processes) pid_in_job[p.task.host_pid] = p.task.ns_pid;
  files.place_epoll_items(pid_in_job);
  for (auto& p : tree.processes) {
    const pid_t pid = p.task.host_pid;
    with_context(fmt::format("dump pid {}", pid), [&] {
      {
        Injector injector(pid, p.task.threads[0], p.task.threads.size());
        p.core = collect_core(p.task, injector);
        p.signals = collect_signals(p.task, injector);
        p.brk = static_cast<uint64_t>(injector.call_checked(p.task.threads[0], "brk(0)", SYS_brk, 0));
        p.mm_attributes = collect_mm_attributes(p.task, injector);
        injector.unmap();  // before the memory layout is read
      }
      memory.pids.push_back(pid);
      memory.incremental.push_back(std::make_unique<IncrementalDump>(opt, pid, p.task.ns_pid, memory.dump_id));
      // --leave-running without dirty tracking: the pages go after the thaw; its userfaultfd is
      // made in the job before the layout is read.
      const bool after_thaw = opt.leave_running && !memory.incremental.back()->tracking();
      memory.background.push_back(after_thaw ? BackgroundCopy::open(p.task) : nullptr);
      p.mm = collect_mm(pid, p.brk, opt.ghost_limit);
      *p.mm.mutable_attributes() = p.mm_attributes;
    });
  }
}

// What belongs to the job as a whole, read through its first process.
struct JobState {
  pb::NamespaceState namespaces;
  std::vector<pb::IpcObject> ipc;
  std::optional<pb::NetState> net;
  MountsDump mounts;
  pb::CgroupState cgroup_state;
  pb::ContainerConfig config;
};

JobState collect_job_state(const DumpTree& tree, const Target& target, const DumpOptions& opt,
                           const NetSysctlDefaults& net_defaults) {
  JobState job;
  const ProcessDump& root = tree.root();
  const pid_t pid = root.task.host_pid;
  with_context(fmt::format("dump pid {}", pid), [&] {
    job.namespaces = collect_namespaces(pid);
    job.ipc = collect_ipc(pid, job.namespaces, tree.host_pids());
    job.net = collect_net(pid, job.namespaces, target.state ? &target.state->config() : nullptr, net_defaults);
    job.mounts = collect_mounts(pid, job.namespaces, target.state ? &*target.state : nullptr, opt.tmpfs_limit);
    if (target.state) {
      job.cgroup_state = collect_cgroup_state(target.cgroup->driver(), target.cgroup->paths());
      job.config = target.state->config();
      // The job is stopped: its output so far, for a copy restored beside it (restored_log.h).
      struct stat log_stat {};
      if (!job.config.log_path().empty() && ::stat(job.config.log_path().c_str(), &log_stat) == 0)
        job.config.set_log_bytes_at_dump(log_stat.st_size);
    } else {
      CgroupDriver driver = detect_cgroup_driver();
      job.cgroup_state = collect_cgroup_state(driver, cgroup_paths_of(pid, driver));
      job.config = synthesize_config(pid, job.namespaces.hostname(), root.core.cwd());
      // A network namespace of its own: net.img's contents.
      if (job.net) job.config.mutable_net()->set_mode("loopback");
      // A job in a root of its own: its working directory is a path there (restored with it).
      if (!job.mounts.mounts.empty() && job.mounts.mounts.front().root()) job.config.clear_workdir();
    }
  });
  return job;
}

void add_stats(images::PageStats& to, const images::PageStats& from) {
  to.pages += from.pages;
  to.zero_pages += from.zero_pages;
  to.raw_bytes += from.raw_bytes;
  to.stored_bytes += from.stored_bytes;
  to.parent_pages += from.parent_pages;
}

void add_memory_stats(DumpReport& report, const MemoryStats& ms) {
  add_stats(report.pages, ms.pages);
  report.vmas_dumped += ms.vmas_dumped;
  report.scan_s += ms.scan_seconds;
  report.read_s += ms.read_seconds;
  report.encode_s += ms.encode_seconds;
  report.pagemap_scan = ms.pagemap_scan;
  report.page_write_s += ms.write_seconds;
  report.wait_s += ms.wait_seconds;
}

// The pages of each process (each dump_pages runs its scan, read, encode and write on three
// threads of its own); with a background copy, only the write-protection now.
void dump_memory(DumpTree& tree, const DumpOptions& opt, DumpReport& report, MemoryPlan& memory) {
  // On a terminal, a line that says how far the pages are (common/progress.h).
  progress::Display display("dump: memory", [pids = memory.pids] {
    uint64_t total = 0;
    for (pid_t pid : pids) total += saved_memory_estimate(pid);
    return total;
  });
  // --leave-running: write-protected by calls injected through ptrace, so on this thread
  // (the one that seized); the copy comes after the thaw.
  std::vector<size_t> stopped_copies;
  for (size_t i = 0; i < tree.processes.size(); ++i) {
    auto& p = tree.processes[i];
    auto& background = memory.background[i];
    if (!background) {
      stopped_copies.push_back(i);
      continue;
    }
    with_context(fmt::format("dump pid {}", p.task.host_pid), [&] {
      add_memory_stats(report, background->protect(p.mm, opt.dir, p.task.ns_pid, opt.compression));
    });
  }
  // The others: the pages of several processes at once, one per CPU (each copy is a pipeline
  // of threads of its own; none of it needs ptrace).
  std::vector<MemoryStats> stats(tree.processes.size());
  for_each_on_threads(stopped_copies.size(), std::max(1u, std::thread::hardware_concurrency()),
                      [&](size_t, size_t k) {
                        const size_t i = stopped_copies[k];
                        auto& p = tree.processes[i];
                        stats[i] = with_context(fmt::format("dump pid {}", p.task.host_pid), [&] {
                          return dump_pages(p.task.host_pid, p.mm, opt.dir, p.task.ns_pid, opt.compression,
                                            memory.incremental[i]->tracking());
                        });
                      });
  for (size_t i : stopped_copies) add_memory_stats(report, stats[i]);
}

// --leave-running, the job thawed: the pages the background copies left for now.
void copy_after_thaw(MemoryPlan& memory, DumpReport& report) {
  for (size_t i = 0; i < memory.background.size(); ++i) {
    auto& background = memory.background[i];
    if (!background) continue;
    if (background->deferred())
      with_context(fmt::format("dump pid {}", memory.pids[i]), [&] { add_memory_stats(report, background->copy()); });
    if (report.memory_note.empty()) report.memory_note = background->summary();
  }
}

void write_images(const images::Checkpoint& ckpt, const DumpTree& tree, FileCollector& files,
                  const JobState& job) {
  {
    images::ImageWriter pstree(ckpt.path(ImageType::Pstree), ImageType::Pstree);
    for (const auto& e : tree_entries(tree)) pstree.write(e);
    pstree.close();
  }
  for (const auto& p : tree.processes) {
    write_one(ckpt, ImageType::Core, p.task.ns_pid, p.core);
    write_one(ckpt, ImageType::Signals, p.task.ns_pid, p.signals);
    write_one(ckpt, ImageType::Mm, p.task.ns_pid, p.mm);
    images::ImageWriter w(ckpt.path(ImageType::Fds, p.task.ns_pid), ImageType::Fds);
    for (const auto& e : p.fds) w.write(e);
    w.close();
  }
  files.write_images(ckpt.dir());
  write_one(ckpt, ImageType::Namespaces, std::nullopt, job.namespaces);
  write_ipc(ckpt, job.ipc);
  write_net(ckpt, job.net);
  write_mounts(ckpt, job.mounts);
  write_one(ckpt, ImageType::Cgroup, std::nullopt, job.cgroup_state);
  write_one(ckpt, ImageType::Container, std::nullopt, job.config);
}

void fill_report(const DumpTree& tree, DumpReport& report) {
  report.host_pid = tree.root().task.host_pid;
  report.ns_pid = tree.root().task.ns_pid;
  report.processes = tree.processes.size();
  for (const auto& p : tree.processes) {
    report.threads += p.task.threads.size();
    report.vmas += static_cast<size_t>(p.mm.vmas_size());
    report.fds += p.fds.size();
    report.sigactions += static_cast<size_t>(p.signals.actions_size());
  }
}

pb::Inventory make_inventory(const DumpTree& tree, const DumpOptions& opt) {
  pb::Inventory inventory;
  inventory.set_root_pid(tree.root().task.ns_pid);
  inventory.set_root_host_pid(tree.root().task.host_pid);
  inventory.set_container_name(opt.container);
  inventory.set_compression(std::string(images::compression_name(opt.compression)));
  inventory.set_page_size(static_cast<uint32_t>(::sysconf(_SC_PAGESIZE)));
  return inventory;
}

// Kills every seized process (the job, and under --init our reaper with it).
void kill_job(DumpTree& tree, const std::vector<pid_t>& processes) {
  std::vector<ptrace::SeizedThread> all = std::move(tree.others);
  for (auto& p : tree.processes)
    for (auto& t : p.task.threads) all.push_back(std::move(t));
  tree.processes.clear();
  auto t_kill = Clock::now();
  kill_seized(all, processes);
  log::debug("killed the job in {:.3f}s", since(t_kill));
}

void remove_dumped_container(const DumpOptions& opt) {
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

DumpReport dump_once(const DumpOptions& opt) {
  DumpReport report;
  auto t_start = Clock::now();
  InterruptGuard interrupt_guard;
  Target target = open_target(opt);

  // Claimed first: a dump that loses the race for the directory leaves it alone.
  DirectoryClaim claim(opt.dir);
  images::Checkpoint ckpt = images::Checkpoint::create(opt.dir);
  claim.mark_unfinished();
  PartialDirectory partial(opt.dir);

  // --- freeze: every thread of every process seized and in a ptrace-stop
  NetSysctlDefaults net_defaults = start_reading_net_defaults();  // meanwhile, not while frozen
  auto t_freeze = Clock::now();
  // A paused container is frozen again before its threads are let go (refreeze, declared
  // after them) where the kernel allows it, and in any case right after (refreeze_late,
  // declared before them: also for a seize that fails half way, which lets them go itself).
  const bool was_paused = target.cgroup && target.cgroup->frozen();
  // Should we die, the guardian leaves the cgroup as we found it (declared first: it says
  // goodbye only after the refreezes below).
  std::optional<Guardian> guardian;
  if (target.cgroup) guardian.emplace(*target.cgroup, was_paused);
  std::optional<Refreeze> refreeze_late;
  if (was_paused) refreeze_late.emplace(*target.cgroup);
  std::vector<ptrace::SeizedThread> seized = seize_job(target, opt, guardian);
  std::optional<Refreeze> refreeze;
  if (was_paused && can_refreeze_before_detach(target.cgroup->driver())) refreeze.emplace(*target.cgroup);
  const std::vector<pid_t> seized_processes = processes_of(seized);
  DumpTree tree = build_tree(std::move(seized), job_of(target, seized_processes), target.what);
  report.freeze_s = since(t_freeze);
  check_interrupted("dump", "the job was left running");

  // --- collect: the shape of the tree, then each process, then what the job shares
  auto t_collect = Clock::now();
  find_zombies(tree);
  find_sessions_without_leader(tree);
  find_groups_without_leader(tree);
  check_tree_shape(tree);
  FileCollector files(opt.ghost_limit, opt.leave_running);
  files.inet().set_options(opt.tcp_established, opt.leave_running);
  if (target.state) files.set_console(target.state->console_path());
  else if (opt.shell_job || opt.outside_console)
    files.set_console(TerminalCheck::outside_terminal_of(tree.root().task.host_pid, /*stdio_too=*/opt.shell_job));
  MemoryPlan memory;
  collect_processes(tree, files, target, opt, memory);
  check_tree_sharing(tree);
  JobState job = collect_job_state(tree, target, opt, net_defaults);
  report.collect_s = since(t_collect);
  check_interrupted("dump", "the job was left running");

  // --- memory, process by process
  auto t_memory = Clock::now();
  dump_memory(tree, opt, report, memory);
  report.memory_s = since(t_memory);
  check_interrupted("dump", "the job was left running");

  // --- write
  auto t_write = Clock::now();
  write_images(ckpt, tree, files, job);
  fill_report(tree, report);
  pb::Inventory inventory = make_inventory(tree, opt);
  {
    std::vector<const IncrementalDump*> incremental;
    for (const auto& i : memory.incremental) incremental.push_back(i.get());
    IncrementalDump::fill_inventory(inventory, incremental);
  }

  if (opt.leave_running) {
    // Resume the job as soon as everything is read; checksumming the files needs no job. A
    // paused one is frozen again first.
    refreeze.reset();
    tree.processes.clear();
    tree.others.clear();
    refreeze_late.reset();
    report.frozen_s = since(t_freeze);
    copy_after_thaw(memory, report);
    ckpt.finalize(std::move(inventory));
    partial.commit();
    claim.complete();
    for (auto& i : memory.incremental) i->finish();
    if (opt.keep_network_lock) report.network_lock = files.inet().keep_lock();  // last: nothing throws after
  } else {
    ckpt.finalize(std::move(inventory));
    partial.commit();
    claim.complete();
    for (auto& i : memory.incremental) i->finish();
    // Only now, with a complete checkpoint on disk, is the job killed. Its log stays for the
    // restored job: the monitor (under --rm) and the removal below leave it.
    if (refreeze) refreeze->release();
    if (refreeze_late) refreeze_late->release();
    if (target.state) launcher::set_container_status(opt.state_root, opt.container, launcher::kStatusDumped);
    files.inet().hand_over_to_kill();  // connections closed in repair mode, the network lock kept
    kill_job(tree, seized_processes);
    report.frozen_s = since(t_freeze);
    report.killed = true;
    if (target.state) remove_dumped_container(opt);
  }
  report.write_s = since(t_write);
  report.total_s = since(t_start);
  return report;
}

}  // namespace

DumpReport dump(const DumpOptions& opt) {
  if (opt.pre_dump) return pre_dump(opt);  // dump/pre_dump.h
  // A passing state of the job (inotify events not read yet, a page unmapped during a
  // --leave-running copy: common/error.h) is met again only by bad luck. A failed dump has
  // let the job go and written nothing, so it runs on meanwhile.
  constexpr int kTries = 5;
  for (int attempt = 1;; ++attempt) {
    try {
      return dump_once(opt);
    } catch (const PassingStateError& e) {
      if (attempt == kTries)
        throw PassingStateError(fmt::format("{} (still so after {} tries, the job running in between; dump again "
                                            "later); no checkpoint was written and the job was left running",
                                            e.what(), kTries));
      log::debug("{}; the job runs on a moment, then the dump starts again", e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(20 * attempt));
    }
  }
}

std::string format_report(const DumpOptions& opt, const DumpReport& r) {
  std::string target = opt.container.empty() ? fmt::format("pid {}", r.host_pid)
                                             : fmt::format("container {} (pid {})", opt.container, r.host_pid);
  double mib = static_cast<double>(r.pages.raw_bytes) / (1 << 20);
  std::string out = fmt::format(
      "dumped {} into {}: {}{} thread(s), {} vma(s) ({} with pages), {} fd(s), {} signal action(s)\n", target,
      opt.dir.string(), r.processes > 1 ? fmt::format("{} processes, ", r.processes) : "", r.threads, r.vmas,
      r.vmas_dumped, r.fds, r.sigactions);
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
