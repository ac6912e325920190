#include "dump/tree.h"

#include <algorithm>
#include <map>
#include <set>

#include <sys/stat.h>

#include "common/error.h"
#include "common/log.h"
#include "common/proc.h"
#include "dump/pstree.h"

namespace stasis::dump {

namespace {

pid_t tgid_of(pid_t tid) {
  auto status = proc::read_status(tid);
  if (!status.fields.count("Tgid")) fail("/proc/{}/status: no Tgid line", tid);
  return status.tgid;
}

// Children of every thread of pid (a child belongs to the thread that forked it).
std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  for (pid_t tid : proc::list_tasks(pid)) {
    try {
      auto c = proc::list_children(pid, tid);
      out.insert(out.end(), c.begin(), c.end());
    } catch (const Error&) {
      // the thread exited meanwhile
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

std::vector<pid_t> DumpTree::host_pids() const {
  std::vector<pid_t> out;
  for (const auto& p : processes) out.push_back(p.task.host_pid);
  return out;
}

DumpTree build_tree(std::vector<ptrace::SeizedThread> all, const std::vector<pid_t>& job, const std::string& what) {
  if (job.empty()) fail("{}: no process of the job to dump", what);
  std::map<pid_t, std::vector<ptrace::SeizedThread>> by_process;
  DumpTree tree;
  const std::set<pid_t> in_job(job.begin(), job.end());
  for (auto& t : all) {
    const pid_t tgid = tgid_of(t.tid());
    if (in_job.count(tgid)) by_process[tgid].push_back(std::move(t));
    else tree.others.push_back(std::move(t));
  }
  std::map<pid_t, ProcessDump> unordered;
  std::map<pid_t, pid_t> host_parent;
  for (auto& [pid, threads] : by_process) {
    ProcessDump p;
    p.task.host_pid = pid;
    // Leader first.
    std::stable_partition(threads.begin(), threads.end(), [pid](const ptrace::SeizedThread& t) { return t.tid() == pid; });
    if (threads.empty() || threads.front().tid() != pid) fail("pid {}: its main thread was not seized", pid);
    p.task.threads = std::move(threads);
    fill_namespace_ids(p.task);
    host_parent[pid] = proc::read_status(pid).ppid;
    unordered.emplace(pid, std::move(p));
  }
  // Parents before children: from the roots (parent not in the tree) down, by namespace pid.
  std::map<pid_t, std::vector<pid_t>> children;  // host pid -> host pids of its children in the tree
  std::vector<pid_t> roots;
  for (const auto& [pid, parent] : host_parent) {
    if (unordered.count(parent)) children[parent].push_back(pid);
    else roots.push_back(pid);
  }
  const auto by_ns_pid = [&](pid_t a, pid_t b) { return unordered.at(a).task.ns_pid < unordered.at(b).task.ns_pid; };
  std::sort(roots.begin(), roots.end(), by_ns_pid);
  std::vector<pid_t> order = roots;
  for (size_t i = 0; i < order.size(); ++i) {
    auto& c = children[order[i]];
    std::sort(c.begin(), c.end(), by_ns_pid);
    order.insert(order.end(), c.begin(), c.end());
  }
  for (pid_t pid : order) {
    ProcessDump& p = unordered.at(pid);
    const pid_t parent = host_parent.at(pid);
    p.task.ns_ppid = unordered.count(parent) ? unordered.at(parent).task.ns_pid : 0;
    tree.processes.push_back(std::move(p));
  }
  log::debug("{}: {} process(es) in the tree", what, tree.processes.size());
  return tree;
}

void find_zombies(DumpTree& tree) {
  std::map<pid_t, pid_t> ns_pid_of;  // host -> namespace pid
  for (const auto& p : tree.processes) ns_pid_of[p.task.host_pid] = p.task.ns_pid;
  for (const auto& p : tree.processes) {
    const Task& t = p.task;
    for (pid_t child : children_of(t.host_pid)) {
      if (ns_pid_of.count(child)) continue;
      proc::Stat st;
      proc::Status status;
      try {
        st = proc::read_stat(child);
        status = proc::read_status(child);
      } catch (const Error&) {
        continue;  // reaped meanwhile
      }
      if (st.state != 'Z')
        fail("pid {} (host pid {}): its child (host pid {}, state {}) was not seized", t.ns_pid, t.host_pid, child,
             st.state);
      if (status.ns_pid.empty() || status.ns_pgid.empty() || status.ns_sid.empty())
        fail("zombie host pid {}: /proc/{}/status has no NSpid, NSpgid or NSsid", child, child);
      pb::TaskEntry e;
      e.set_pid(status.ns_pid.back());
      e.set_ppid(t.ns_pid);
      e.set_pgid(status.ns_pgid.back());
      e.set_sid(status.ns_sid.back());
      e.add_tids(e.pid());
      e.set_host_pid(child);
      e.set_comm(st.comm);
      e.set_zombie(true);
      e.set_exit_status(st.exit_code);
      log::debug("pid {}: zombie child {} (status {:#x})", t.ns_pid, e.pid(), st.exit_code);
      tree.zombies.push_back(std::move(e));
    }
  }
}

namespace {

// The namespace pids of the tree: its live processes and its zombies.
std::set<pid_t> tree_pids(const DumpTree& tree) {
  std::set<pid_t> pids;
  for (const auto& p : tree.processes) pids.insert(p.task.ns_pid);
  for (const auto& z : tree.zombies) pids.insert(z.pid());
  return pids;
}

// What a root (a process whose parent is not in the tree) inherits on restore: PID 1's
// session and group (ours under --init), or those of the root of a `--pid` subtree, whose
// own outside session and group it joins as PID 1's.
std::pair<pid_t, pid_t> outside_ids(const DumpTree& tree, const std::set<pid_t>& pids) {
  const Task& root = tree.root().task;
  const pid_t sid = root.ns_ppid == 0 && root.ns_sid != root.ns_pid ? root.ns_sid : 1;
  const pid_t pgid = root.ns_ppid == 0 && !pids.count(root.ns_pgid) ? root.ns_pgid : 1;
  return {sid, pgid};
}

// A process PID 1 adopted: its parent is PID 1 of the tree, or, when PID 1 is not in the tree
// (our --init reaper), none.
bool adopted_by_pid_1(const DumpTree& tree, const Task& t) {
  return tree.root().task.ns_pid == 1 ? t.ns_ppid == 1 : t.ns_ppid == 0;
}

}  // namespace

void find_sessions_without_leader(DumpTree& tree) {
  const std::set<pid_t> pids = tree_pids(tree);
  const pid_t outside_sid = outside_ids(tree, pids).first;
  std::map<pid_t, pid_t> sid_of;  // ns pid -> session, live processes
  for (const auto& p : tree.processes) sid_of[p.task.ns_pid] = p.task.ns_sid;
  for (auto& p : tree.processes) {
    const Task& t = p.task;
    // (The first root is the job itself; a session outside the namespace, 0, is PID 1's.)
    // An orphan of PID 1, or one whose parent in the tree is in another session: re-parented
    // to a subreaper, or its parent left the session after the fork.
    auto parent = sid_of.find(t.ns_ppid);
    const bool parent_elsewhere = parent != sid_of.end() && parent->second != t.ns_sid;
    if (&p == &tree.processes.front() || !(adopted_by_pid_1(tree, t) || parent_elsewhere)) continue;
    if (t.ns_sid <= 0 || t.ns_sid == t.ns_pid || t.ns_sid == outside_sid || pids.count(t.ns_sid)) continue;
    p.via_session_helper = true;
    log::debug("pid {}: its session {} has lost its leader: restore makes it through a stand-in", t.ns_pid, t.ns_sid);
  }
}

void find_groups_without_leader(DumpTree& tree) {
  std::map<pid_t, size_t> index;  // ns pid -> live process
  for (size_t i = 0; i < tree.processes.size(); ++i) index[tree.processes[i].task.ns_pid] = i;
  const std::set<pid_t> pids = tree_pids(tree);
  const auto [outside_sid, outside_pgid] = outside_ids(tree, pids);
  std::map<pid_t, std::vector<size_t>> members;  // leaderless group -> its live members
  for (size_t i = 0; i < tree.processes.size(); ++i) {
    const Task& t = tree.processes[i].task;
    if (t.ns_pgid <= 0 || t.ns_pgid == t.ns_pid || pids.count(t.ns_pgid)) continue;
    if (t.ns_pgid == outside_pgid || t.ns_pgid == t.ns_sid) continue;  // inherited, or the session's
    members[t.ns_pgid].push_back(i);
  }
  for (const auto& [pgid, in_group] : members) {
    const Task& first = tree.processes[in_group.front()].task;
    const bool one_session = std::all_of(in_group.begin(), in_group.end(), [&](size_t i) {
      return tree.processes[i].task.ns_sid == first.ns_sid;
    });
    // Its zombies join it before they exit (restore/stub.cc create_zombie), while the stand-in lives.
    auto host = index.find(first.ns_ppid);
    if (!one_session || host == index.end() || tree.processes[host->second].task.ns_sid != first.ns_sid) continue;
    tree.processes[host->second].group_stand_ins.push_back(pgid);
    log::debug("process group {} has lost its leader: restore makes it through a stand-in child of pid {}", pgid,
               first.ns_ppid);
  }
}

void check_tree_shape(const DumpTree& tree) {
  struct Ids {
    pid_t host_pid, pid, ppid, pgid, sid;
    bool helper;
  };
  std::map<pid_t, Ids> by_ns_pid;  // live processes and zombies
  std::vector<Ids> all;
  for (const auto& p : tree.processes)
    all.push_back(
        {p.task.host_pid, p.task.ns_pid, p.task.ns_ppid, p.task.ns_pgid, p.task.ns_sid, p.via_session_helper});
  for (const auto& z : tree.zombies) all.push_back({z.host_pid(), z.pid(), z.ppid(), z.pgid(), z.sid(), false});
  std::set<pid_t> pids;
  for (const auto& i : all) {
    by_ns_pid[i.pid] = i;
    pids.insert(i.pid);
  }
  const auto [outside_sid, outside_pgid] = outside_ids(tree, pids);
  std::set<pid_t> stand_ins;  // groups a stand-in remakes (find_groups_without_leader)
  for (const auto& p : tree.processes) stand_ins.insert(p.group_stand_ins.begin(), p.group_stand_ins.end());
  const size_t live = tree.processes.size();
  for (size_t k = 0; k < all.size(); ++k) {
    const Ids& t = all[k];
    const Ids* parent = t.ppid ? &by_ns_pid.at(t.ppid) : nullptr;
    const std::string who = fmt::format("{}pid {} (host pid {})", k < live ? "" : "zombie ", t.pid, t.host_pid);
    const pid_t inherited_sid = t.helper ? t.sid : parent ? parent->sid : outside_sid;
    if (t.sid != t.pid && t.sid != inherited_sid)
      throw UnsupportedError(fmt::format(
          "{} is in session {}, {}: not supported yet (restore recreates a session through its leader and the "
          "leader's descendants)",
          who, t.sid,
          by_ns_pid.count(t.sid) ? "whose leader is not its ancestor (it was re-parented)" : "whose leader has exited"));
    if (t.pgid == t.pid) continue;
    if (k >= live) {
      // A zombie is made in its group before it exits: the one it inherits from its parent's
      // stub, or one a process of the tree (or a stand-in) makes in its session.
      const bool parent_group_at_fork = parent->pgid == parent->pid || !by_ns_pid.count(parent->pgid);
      if (t.pgid == parent->pgid && parent_group_at_fork) continue;
      auto leader = by_ns_pid.find(t.pgid);
      if (leader != by_ns_pid.end() && leader->second.pgid == t.pgid && leader->second.sid == t.sid) continue;
      if (stand_ins.count(t.pgid)) continue;
      throw UnsupportedError(fmt::format("{} is in process group {}, whose leader has exited and which no "
                                         "process of the job is left in: not supported",
                                         who, t.pgid));
    }
    auto leader = by_ns_pid.find(t.pgid);
    if (leader != by_ns_pid.end() && leader->second.sid == t.sid) continue;
    // A group whose leader is not in the tree is the one a process inherits: from PID 1
    // (a root), from the stand-in for its session's leader, or from its parent.
    if (leader == by_ns_pid.end()) {
      if (stand_ins.count(t.pgid)) continue;
      if (!parent && t.pgid == outside_pgid && t.sid == outside_sid) continue;
      if (t.helper && t.pgid == t.sid) continue;
      if (parent && t.pgid == parent->pgid && t.sid == parent->sid) continue;
    }
    throw UnsupportedError(
        fmt::format("{} is in process group {}, whose leader has exited: not supported yet", who, t.pgid));
  }
}

void check_tree_sharing(const DumpTree& tree) {
  if (tree.processes.size() < 2) return;
  // A deleted tmpfs file mapped shared comes back as a memfd made once for its mappers: an fd
  // on it, a ghost file restore makes apart, would not be the same object. (A memfd's fds and
  // mappings come from one memfd, restore/tree.cc.)
  std::map<uint64_t, std::set<pid_t>> memfd_mappers;
  std::map<uint64_t, std::string> names;
  for (const auto& p : tree.processes)
    for (const auto& vma : p.mm.vmas())
      if (vma.kind() == pb::Vma::ANON_SHARED && !vma.memfd_name().empty()) {
        memfd_mappers[vma.shmem_id()].insert(p.task.ns_pid);
        names[vma.shmem_id()] = vma.memfd_name();
      }
  for (const auto& p : tree.processes)
    for (const auto& e : p.fds) {
      if (e.kind() != pb::FdEntry::REGULAR) continue;
      struct stat st {};
      const std::string link = fmt::format("/proc/{}/fd/{}", p.task.host_pid, e.fd());
      if (::stat(link.c_str(), &st) < 0) continue;
      auto it = memfd_mappers.find(st.st_ino);
      if (it == memfd_mappers.end() || proc::read_link(link).rfind("/memfd:", 0) == 0) continue;
      if (it->second.size() > 1 || !it->second.count(p.task.ns_pid))
        throw UnsupportedError(fmt::format("pid {} fd {}: the deleted tmpfs file {} is open here and mapped by {} "
                                           "other process(es): not supported yet",
                                           p.task.ns_pid, e.fd(), names[st.st_ino],
                                           it->second.size() - it->second.count(p.task.ns_pid)));
    }
}

std::vector<pb::TaskEntry> tree_entries(const DumpTree& tree) {
  std::vector<pb::TaskEntry> out;
  for (const auto& p : tree.processes) {
    out.push_back(task_entry(p.task));
    out.back().set_via_session_helper(p.via_session_helper);
    for (pid_t pgid : p.group_stand_ins) out.back().add_group_stand_ins(pgid);
  }
  out.insert(out.end(), tree.zombies.begin(), tree.zombies.end());
  return out;
}

}  // namespace stasis::dump
