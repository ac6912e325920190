#include "dump/pstree.h"

#include "common/error.h"
#include "common/file_util.h"
#include "common/proc.h"

namespace stasis::dump {

namespace {

// The id in the innermost pid namespace: the last number of a status line like
// "NSpid:\t1234\t1" (parsed by proc into `ids`); `key` names that line in errors.
pid_t innermost(const proc::Status& status, const std::vector<pid_t>& ids, const char* key, pid_t pid) {
  if (!status.fields.count(key)) fail("/proc/{}/status: no {} line", pid, key);
  if (ids.empty()) fail("/proc/{}/status: empty {} line", pid, key);
  return ids.back();
}

}  // namespace

void fill_namespace_ids(Task& task) {
  auto status = proc::read_status(task.host_pid);
  task.ns_pid = innermost(status, status.ns_pid, "NSpid", task.host_pid);
  task.ns_pgid = innermost(status, status.ns_pgid, "NSpgid", task.host_pid);
  task.ns_sid = innermost(status, status.ns_sid, "NSsid", task.host_pid);
  task.ns_ppid = 0;
  task.ns_tids.clear();
  for (const auto& t : task.threads) {
    auto ts = proc::read_status(t.tid());  // /proc/TID/status works for any thread
    task.ns_tids.push_back(innermost(ts, ts.ns_pid, "NSpid", t.tid()));
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
  for (const auto& t : task.threads)
    if (t.group_stop_signal() != 0) e.set_stop_signal(t.group_stop_signal());
  return e;
}

}  // namespace stasis::dump
