#include "dump/pre_dump.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <optional>

#include "common/cgroup.h"
#include "common/error.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "common/proc.h"
#include "dump/dir_claim.h"
#include "dump/guardian.h"
#include "dump/incremental.h"
#include "dump/inject.h"
#include "dump/memory.h"
#include "dump/pstree.h"
#include "dump/dirty_tracking.h"
#include "dump/seize.h"
#include "dump/task.h"
#include "images/checkpoint.h"
#include "images/image_file.h"
#include "launcher/container.h"
#include "launcher/state_store.h"

namespace stasis::dump {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using images::ImageType;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A process of the job: its seized threads (leader first), then what the pre-dump reads.
struct Process {
  Task task;
  pb::MmState mm;
  PagePlan plan;
  std::unique_ptr<IncrementalDump> incremental;
};

// The seized threads by process, the tree's root first (the one whose parent is not in the
// job), leaving out our reaper (reaper: its pid; 0 for none).
std::vector<Process> processes_of_job(std::vector<ptrace::SeizedThread>& all, pid_t reaper) {
  std::map<pid_t, std::vector<size_t>> by_process;
  std::map<pid_t, pid_t> parent;
  for (size_t i = 0; i < all.size(); ++i) {
    const proc::Status status = proc::read_status(all[i].tid());
    by_process[status.tgid].push_back(i);
    parent[status.tgid] = status.ppid;
  }
  if (reaper > 0) by_process.erase(reaper);
  std::vector<Process> job;
  for (auto& [pid, threads] : by_process) {
    Process p;
    p.task.host_pid = pid;
    for (size_t i : threads) p.task.threads.push_back(std::move(all[i]));
    std::stable_partition(p.task.threads.begin(), p.task.threads.end(),
                          [&](const ptrace::SeizedThread& t) { return t.tid() == pid; });
    job.push_back(std::move(p));
  }
  std::stable_partition(job.begin(), job.end(),
                        [&](const Process& p) { return !by_process.count(parent[p.task.host_pid]); });
  return job;
}

}  // namespace

DumpReport pre_dump(const DumpOptions& opt) {
  DumpReport report;
  const auto t_start = Clock::now();
  InterruptGuard interrupt_guard;

  std::optional<pb::ContainerState> state;
  std::optional<Cgroup> cgroup;
  if (!opt.container.empty()) {
    launcher::StateStore store(opt.state_root);
    state = store.load(opt.container);
    if (state->status() == "frozen")
      fail("container {} is paused: a pre-dump is for a running job (dump it directly, or thaw it first)",
           opt.container);
    if (state->status() != "running" || !launcher::container_alive(*state))
      fail("container {} is not running (status: {})", opt.container, launcher::display_status(*state));
    cgroup = launcher::open_cgroup(*state);
  } else {
    if (opt.pid <= 0) throw UsageError(fmt::format("--pid {}: not a process id", opt.pid));
    if (!fs::exists(fmt::format("/proc/{}", opt.pid))) fail("no process with pid {}", opt.pid);
    if (opt.pid == ::getpid() || opt.pid == ::getppid()) fail("pid {} is stasis itself or its parent", opt.pid);
  }

  DirectoryClaim claim(opt.dir);
  images::Checkpoint ckpt = images::Checkpoint::create(opt.dir);
  claim.mark_unfinished();
  bool complete = false;
  struct RemoveUnlessComplete {
    const fs::path& dir;
    bool& complete;
    ~RemoveUnlessComplete() {
      if (complete) return;
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } remove_partial{opt.dir, complete};

  // --- stopped: layout, tracking, the pages to save
  const auto t_freeze = Clock::now();
  std::optional<Guardian> guardian;
  if (cgroup) guardian.emplace(*cgroup, false);
  std::vector<ptrace::SeizedThread> all = cgroup ? seize_cgroup(*cgroup, *guardian) : seize_subtree(opt.pid);
  report.freeze_s = since(t_freeze);
  check_interrupted("dump", "the job was left running");

  const std::string what = state ? fmt::format("container {}", opt.container) : fmt::format("pid {}", opt.pid);
  const pid_t reaper = state && state->config().init() ? state->init_pid() : 0;
  std::vector<Process> job = processes_of_job(all, reaper);
  if (job.empty()) fail("{}: no process of the job to dump", what);
  report.host_pid = job.front().task.host_pid;
  report.processes = job.size();

  const auto t_collect = Clock::now();
  // One id for the whole dump: the next dump's --parent finds every process's tracking by it.
  const std::string dump_id = new_dump_id();
  for (auto& p : job) {
    const pid_t pid = p.task.host_pid;
    report.threads += p.task.threads.size();
    with_context(fmt::format("pre-dump pid {}", pid), [&] {
      fill_namespace_ids(p.task);
      uint64_t brk = 0;
      {
        Injector injector(pid, p.task.threads[0], p.task.threads.size());
        brk = static_cast<uint64_t>(injector.call_checked(p.task.threads[0], "brk(0)", SYS_brk, 0));
        p.incremental = std::make_unique<IncrementalDump>(opt, pid, p.task.ns_pid, dump_id, &injector,
                                                          &p.task.threads[0]);
        injector.unmap();  // before the memory layout is read
      }
      p.mm = collect_mm(pid, brk);
      p.plan = plan_pages(pid, p.mm, p.incremental->tracking());
    });
    report.tracked_pids.push_back(pid);
  }
  report.ns_pid = job.front().task.ns_pid;
  report.collect_s = since(t_collect);

  // --- the job runs again; the pages are copied meanwhile
  for (auto& p : job) p.task.threads.clear();
  all.clear();
  guardian.reset();
  report.frozen_s = since(t_freeze);
  check_interrupted("dump", "the job was left running");

  const auto t_memory = Clock::now();
  for (auto& p : job) {
    const MemoryStats ms = with_context(fmt::format("pre-dump pid {}", p.task.host_pid), [&] {
      return copy_pages(p.task.host_pid, p.plan, opt.dir, p.task.ns_pid, opt.compression, /*job_running=*/true);
    });
    report.pages.pages += ms.pages.pages;
    report.pages.zero_pages += ms.pages.zero_pages;
    report.pages.raw_bytes += ms.pages.raw_bytes;
    report.pages.stored_bytes += ms.pages.stored_bytes;
    report.pages.parent_pages += ms.pages.parent_pages;
    report.vmas += static_cast<size_t>(p.mm.vmas_size());
    report.vmas_dumped += ms.vmas_dumped;
    report.pagemap_scan = ms.pagemap_scan;
    report.scan_s += ms.scan_seconds;
    report.read_s += ms.read_seconds;
    report.encode_s += ms.encode_seconds;
    report.page_write_s += ms.write_seconds;
    report.wait_s += ms.wait_seconds;
  }
  report.memory_s = since(t_memory);

  const auto t_write = Clock::now();
  for (const auto& p : job) images::write_single(ckpt.path(ImageType::Mm, p.task.ns_pid), ImageType::Mm, p.mm);
  pb::Inventory inventory;
  inventory.set_root_pid(job.front().task.ns_pid);
  inventory.set_root_host_pid(job.front().task.host_pid);
  inventory.set_container_name(opt.container);
  inventory.set_compression(std::string(images::compression_name(opt.compression)));
  inventory.set_page_size(static_cast<uint32_t>(::sysconf(_SC_PAGESIZE)));
  std::vector<const IncrementalDump*> incremental;
  for (const auto& p : job) incremental.push_back(p.incremental.get());
  IncrementalDump::fill_inventory(inventory, incremental);
  ckpt.finalize(std::move(inventory));
  complete = true;
  claim.complete();
  for (auto& p : job) p.incremental->finish();
  report.write_s = since(t_write);
  report.total_s = since(t_start);
  return report;
}

}  // namespace stasis::dump
