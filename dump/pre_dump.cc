#include "dump/pre_dump.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
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
  std::vector<ptrace::SeizedThread> all = cgroup ? seize_cgroup(*cgroup, *guardian) : seize_process(opt.pid);
  report.freeze_s = since(t_freeze);
  check_interrupted("dump", "the job was left running");

  std::map<pid_t, std::vector<size_t>> by_process;
  for (size_t i = 0; i < all.size(); ++i) by_process[proc::read_status(all[i].tid()).tgid].push_back(i);
  std::vector<pid_t> job;
  for (auto& [p, _] : by_process)
    if (!(state && state->config().init() && p == state->init_pid())) job.push_back(p);
  const std::string what = state ? fmt::format("container {}", opt.container) : fmt::format("pid {}", opt.pid);
  refuse_process_tree(job, what);
  if (job.empty()) fail("{}: no process of the job to dump", what);
  Task task;
  task.host_pid = job.front();
  for (size_t i : by_process[task.host_pid]) task.threads.push_back(std::move(all[i]));
  std::stable_partition(task.threads.begin(), task.threads.end(),
                        [&](const ptrace::SeizedThread& t) { return t.tid() == task.host_pid; });
  const pid_t pid = task.host_pid;
  report.host_pid = pid;
  report.threads = task.threads.size();

  const auto t_collect = Clock::now();
  pb::MmState mm;
  PagePlan plan;
  std::optional<IncrementalDump> incremental;
  with_context(fmt::format("pre-dump pid {}", pid), [&] {
    fill_namespace_ids(task);
    report.ns_pid = task.ns_pid;
    uint64_t brk = 0;
    {
      Injector injector(pid, task.threads[0], task.threads.size());
      brk = static_cast<uint64_t>(injector.call_checked(task.threads[0], "brk(0)", SYS_brk, 0));
      incremental.emplace(opt, pid, task.ns_pid, &injector, &task.threads[0]);
      injector.unmap();  // before the memory layout is read
    }
    mm = collect_mm(pid, brk);
    plan = plan_pages(pid, mm, incremental->tracking());
  });
  report.collect_s = since(t_collect);

  // --- the job runs again; the pages are copied meanwhile
  task.threads.clear();
  all.clear();
  guardian.reset();
  report.frozen_s = since(t_freeze);
  check_interrupted("dump", "the job was left running");

  const auto t_memory = Clock::now();
  MemoryStats ms;
  with_context(fmt::format("pre-dump pid {}", pid), [&] {
    ms = copy_pages(pid, plan, opt.dir, task.ns_pid, opt.compression, /*job_running=*/true);
  });
  report.pages = ms.pages;
  report.vmas = static_cast<size_t>(mm.vmas_size());
  report.vmas_dumped = ms.vmas_dumped;
  report.pagemap_scan = ms.pagemap_scan;
  report.scan_s = ms.scan_seconds;
  report.read_s = ms.read_seconds;
  report.encode_s = ms.encode_seconds;
  report.page_write_s = ms.write_seconds;
  report.wait_s = ms.wait_seconds;
  report.memory_s = since(t_memory);

  const auto t_write = Clock::now();
  images::write_single(ckpt.path(ImageType::Mm, task.ns_pid), ImageType::Mm, mm);
  pb::Inventory inventory;
  inventory.set_root_pid(task.ns_pid);
  inventory.set_root_host_pid(pid);
  inventory.set_container_name(opt.container);
  inventory.set_compression(std::string(images::compression_name(opt.compression)));
  inventory.set_page_size(static_cast<uint32_t>(::sysconf(_SC_PAGESIZE)));
  incremental->fill_inventory(inventory);
  ckpt.finalize(std::move(inventory));
  complete = true;
  claim.complete();
  incremental->finish();
  report.write_s = since(t_write);
  report.total_s = since(t_start);
  return report;
}

}  // namespace stasis::dump
