#include "dump/pstree.h"

#include "common/error.h"
#include "common/file_util.h"
#include "dump/procfs.h"

namespace stasis::dump {

void fill_namespace_ids(Task& task) {
  auto status = procfs::read_status(task.host_pid);
  task.ns_pid = procfs::last_pid_field(status, "NSpid", task.host_pid);
  task.ns_pgid = procfs::last_pid_field(status, "NSpgid", task.host_pid);
  task.ns_sid = procfs::last_pid_field(status, "NSsid", task.host_pid);
  task.ns_ppid = 0;
  task.ns_tids.clear();
  for (const auto& t : task.threads) {
    auto ts = procfs::read_status(t.tid());  // /proc/TID/status works for any thread
    task.ns_tids.push_back(procfs::last_pid_field(ts, "NSpid", t.tid()));
  }
}

pb::TaskEntry task_entry(const Task& task) {
  pb::TaskEntry e;
  e.set_pid(task.ns_pid);
  e.set_ppid(task.ns_ppid);
  e.set_pgid(task.ns_pgid);
  e.set_sid(task.ns_sid);
  for (pid_t t : task.ns_tids) e.add_tids(t);
  e.set_host_pid(task.host_pid);
  std::string comm = read_file(fmt::format("/proc/{}/comm", task.host_pid));
  while (!comm.empty() && comm.back() == '\n') comm.pop_back();
  e.set_comm(comm);
  return e;
}

void refuse_process_tree(const std::vector<pid_t>& processes, const std::string& what) {
  if (processes.size() <= 1) return;
  std::string list;
  for (pid_t p : processes) list += (list.empty() ? "" : ", ") + std::to_string(p);
  throw UnsupportedError(fmt::format("{} has {} processes (pids {}): only a single process (with any number of "
                                     "threads) can be dumped; process trees come in a later issue",
                                     what, processes.size(), list));
}

}  // namespace stasis::dump
