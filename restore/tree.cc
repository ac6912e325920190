#include "restore/tree.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "common/error.h"
#include "common/log.h"
#include "images/image_file.h"
#include "images/image_type.h"
#include "restore/task_image.h"

namespace stasis::restore {

namespace {

// What must come from one creation: the ends of a pipe, the descriptions of a deleted
// inode, else the open file itself.
std::string group_of(const pb::FdEntry& e, const FileImages& files) {
  if (e.kind() == pb::FdEntry::PIPE) {
    auto it = files.pipe_ends.find(e.file_id());
    if (it != files.pipe_ends.end()) return fmt::format("pipe {}", it->second.pipe_id());
  }
  if (e.kind() == pb::FdEntry::TTY) {
    // Both ends of a pty pair come from one creation (one master opened).
    auto it = files.ptys.find(e.file_id());
    if (it != files.ptys.end()) return fmt::format("pty {}:{}", it->second.pair_dev(), it->second.index());
  }
  if (e.kind() == pb::FdEntry::REGULAR || e.kind() == pb::FdEntry::DIRECTORY) {
    auto it = files.regfiles.find(e.file_id());
    if (it != files.regfiles.end() && it->second.deleted())
      return fmt::format("inode {}", it->second.same_inode_as() ? it->second.same_inode_as() : it->second.id());
  }
  // A FileOpener builds every unix socket of the image at once (pairs, listeners with their
  // connections): they must all come from one build, or the ends of a pair held by different
  // processes (nginx's master and worker channel) would each be connected to a copy left behind.
  if (e.kind() == pb::FdEntry::UNIX_SOCKET) return "unix sockets";
  return fmt::format("file {}:{}", static_cast<int>(e.kind()), e.file_id());
}

// The lowest common ancestor of the processes (indexes), or kInitProcess.
int common_ancestor(const std::vector<int>& parent, const std::set<int>& holders) {
  std::vector<int> path;  // the first holder and its ancestors, nearest first
  for (int p = *holders.begin(); p != kInitProcess; p = parent[static_cast<size_t>(p)]) path.push_back(p);
  size_t lowest = 0;  // index in path of the lowest ancestor common to all so far
  for (int h : holders) {
    std::set<int> ancestors;
    for (int p = h; p != kInitProcess; p = parent[static_cast<size_t>(p)]) ancestors.insert(p);
    while (lowest < path.size() && !ancestors.count(path[lowest])) ++lowest;
  }
  return lowest < path.size() ? path[lowest] : kInitProcess;
}

// The memfd inode (shmem id) a REGULAR fd entry is open on, or 0.
uint64_t memfd_of(const pb::FdEntry& e, const FileImages& files) {
  if (e.kind() != pb::FdEntry::REGULAR) return 0;
  auto it = files.regfiles.find(e.file_id());
  return it != files.regfiles.end() && it->second.memfd() ? it->second.file().ino() : 0;
}

// The processes holding fds on memfd `id`.
std::set<int> memfd_fd_holders(const RestoreTree& tree, uint64_t id) {
  std::set<int> out;
  for (size_t i = 0; i < tree.processes.size(); ++i)
    for (const auto& e : tree.processes[i].task.fds)
      if (memfd_of(e, tree.processes[i].files) == id) out.insert(static_cast<int>(i));
  return out;
}

// A memfd mapped by more than one process, or by one and open in another, and also open as
// fds: every description of it goes to the tree's shared files, made by the ancestor common to
// its mappers and holders, who makes the mappings' memfd from one of them. Returns the index
// of that one in tree.shared.
int share_memfd_fds(RestoreTree& tree, uint64_t id, int creator) {
  int first = -1;
  for (size_t j = 0; j < tree.shared.size(); ++j)
    if (memfd_of(tree.shared[j].entry, tree.processes.front().files) == id) {
      tree.shared[j].creator = creator;  // the group's creator, or an ancestor of it
      if (first < 0) first = static_cast<int>(j);
    }
  if (first >= 0) return first;
  // Held by one process only: its descriptions join the shared files.
  std::set<std::pair<int, uint64_t>> added;
  for (const auto& p : tree.processes)
    for (const auto& e : p.task.fds)
      if (memfd_of(e, p.files) == id && added.emplace(static_cast<int>(e.kind()), e.file_id()).second) {
        if (first < 0) first = static_cast<int>(tree.shared.size());
        tree.shared.push_back({e, creator});
      }
  return first;
}

// MAP_SHARED anonymous memory and memfds mapped by more than one VMA of the tree: made once by
// the holders' common ancestor, mapped by every holder from the one fd.
void find_shared_memory(RestoreTree& tree) {
  struct Use {
    std::set<int> holders;
    size_t vmas = 0;
    uint64_t size = 0;
    const pb::Vma* first = nullptr;
  };
  std::map<uint64_t, Use> uses;
  for (size_t i = 0; i < tree.processes.size(); ++i)
    for (const auto& vma : tree.processes[i].task.mm.vmas()) {
      if (vma.kind() != pb::Vma::ANON_SHARED || vma.sysv_shm()) continue;
      Use& u = uses[vma.shmem_id()];
      u.holders.insert(static_cast<int>(i));
      ++u.vmas;
      u.size = std::max(u.size, vma.pgoff() + (vma.end() - vma.start()));
      if (!u.first) u.first = &vma;
    }
  // The slots of the shared memory come after every shared file: first decide which memfds'
  // fds join the shared files, then number the slots.
  struct Decided {
    uint64_t id;
    const Use* use;
    bool memfd;
    int creator;
    int from_shared_file = -1;
  };
  std::vector<Decided> decided;
  for (const auto& [id, u] : uses) {
    const bool memfd = !u.first->memfd_name().empty();
    // A memfd's fds and mappings are one memfd: all the processes holding either count.
    const std::set<int> fd_holders = memfd ? memfd_fd_holders(tree, id) : std::set<int>{};
    std::set<int> involved = u.holders;
    involved.insert(fd_holders.begin(), fd_holders.end());
    // One VMA of one process needs nothing: a memfd is made by its stub, anonymous memory
    // mapped anew (several VMAs of one memfd in one process share its mapped_files entry, and
    // its fds there give it theirs, restore/stub.cc).
    if (memfd ? involved.size() < 2 : u.vmas < 2) continue;
    Decided d{id, &u, memfd, common_ancestor(tree.parent, involved)};
    if (!fd_holders.empty()) d.from_shared_file = share_memfd_fds(tree, id, d.creator);
    decided.push_back(d);
  }
  for (const Decided& d : decided) {
    const uint64_t id = d.id;
    const Use& u = *d.use;
    const bool memfd = d.memfd;
    const int slot = static_cast<int>(tree.shared.size() + tree.shared_memory.size());
    SharedMemory m;
    m.size = memfd ? u.first->memfd_size() : u.size;
    m.creator = d.creator;
    m.from_shared_file = d.from_shared_file;
    for (int i : u.holders) {
      RestorePlan& plan = tree.processes[static_cast<size_t>(i)];
      if (memfd) {
        MappedFile& f = plan.mapped_files[static_cast<size_t>(plan.memfd_index(id))];
        f.shared_slot = slot;
        m.file = f;
      } else {
        MappedFile f;
        f.path = "/dev/zero (deleted)";
        f.writable = true;
        f.anon_shared = true;
        f.shmem_id = id;
        f.shared_slot = slot;
        m.file = f;
        plan.mapped_files.insert(plan.mapped_files.end() - 1, f);  // the exe stays last
      }
    }
    log::debug("shared memory (inode {}, {} bytes): {} VMA(s) in {} process(es)", id, m.size, u.vmas,
               u.holders.size());
    tree.shared_memory.push_back(std::move(m));
  }
}

}  // namespace

bool RestoreTree::has_process(pid_t pid) const {
  return std::any_of(processes.begin(), processes.end(), [&](const RestorePlan& p) { return p.task.pid() == pid; });
}

std::vector<size_t> RestoreTree::children_of(int index) const {
  std::vector<size_t> out;
  for (size_t i = 0; i < processes.size(); ++i)
    if (parent[i] == index) out.push_back(i);
  return out;
}

SharedFds RestoreTree::shared_fds() const {
  SharedFds out;
  for (size_t j = 0; j < shared.size(); ++j)
    out[{static_cast<int>(shared[j].entry.kind()), shared[j].entry.file_id()}] = processes.front().shared_fd(j);
  return out;
}

int RestoreTree::top_fd() const {
  int top = 0;
  for (const auto& p : processes) top = std::max(top, p.top_fd());
  return top;
}

RestoreTree load_tree(const images::Checkpoint& checkpoint, const FileImages& files, int inherited) {
  using images::ImageType;
  RestoreTree tree;
  tree.entries = images::read_all<pb::TaskEntry>(checkpoint.path(ImageType::Pstree), ImageType::Pstree);
  if (tree.entries.empty()) fail("{}: pstree.img lists no process", checkpoint.dir().string());
  std::map<int, int> index_of;  // namespace pid -> index
  std::set<int> pids;
  for (const auto& e : tree.entries) {
    if (!pids.insert(e.pid()).second) fail("{}: pstree.img lists pid {} twice", checkpoint.dir().string(), e.pid());
    if (e.zombie()) {
      auto it = index_of.find(e.ppid());
      if (it == index_of.end())
        fail("{}: pstree.img lists zombie {} before its parent {}", checkpoint.dir().string(), e.pid(), e.ppid());
      tree.zombies.push_back({e, it->second});
      continue;
    }
    const int index = static_cast<int>(tree.processes.size());
    int parent = kInitProcess;
    if (e.ppid() != 0) {
      auto it = index_of.find(e.ppid());
      if (it == index_of.end())
        fail("{}: pstree.img lists pid {} before its parent {}", checkpoint.dir().string(), e.pid(), e.ppid());
      parent = it->second;
    }
    tree.parent.push_back(parent);
    tree.processes.push_back(make_plan(checkpoint.dir(), load_task_image(checkpoint, e), files));
    index_of[e.pid()] = index;
  }
  if (tree.processes.front().task.pid() == 1 && tree.children_of(kInitProcess).size() != 1)
    fail("{}: pid 1 is not the ancestor of every process", checkpoint.dir().string());

  // Shared open files: groups held by more than one process.
  std::map<std::string, std::set<int>> holders;
  std::map<std::string, std::map<std::pair<int, uint64_t>, pb::FdEntry>> members;
  for (size_t i = 0; i < tree.processes.size(); ++i)
    for (const auto& e : tree.processes[i].task.fds) {
      if (e.kind() == pb::FdEntry::INHERITED) continue;  // the stdio copies are shared already
      const std::string group = group_of(e, files);
      holders[group].insert(static_cast<int>(i));
      members[group].emplace(std::make_pair(static_cast<int>(e.kind()), e.file_id()), e);
    }
  // A pty that is a session's controlling terminal is made before the session's leader makes
  // its processes (restore/stub.cc): in a slot, by the leader or an ancestor of it.
  std::map<std::string, int> controlling;  // group -> index of its session's leader
  for (const auto& [id, t] : files.ptys) {
    if (t.session() <= 0) continue;
    auto leader = index_of.find(t.session());
    if (leader == index_of.end())
      fail("{}: pty {} is the controlling terminal of session {}, which pstree.img does not list",
           checkpoint.dir().string(), t.index(), t.session());
    controlling[fmt::format("pty {}:{}", t.pair_dev(), t.index())] = leader->second;
  }
  for (auto& [group, who] : holders) {
    auto ctty = controlling.find(group);
    if (ctty != controlling.end()) who.insert(ctty->second);
    if (who.size() < 2 && ctty == controlling.end()) continue;
    const int creator = common_ancestor(tree.parent, who);
    for (const auto& [key, entry] : members[group]) tree.shared.push_back({entry, creator});
    log::debug("{}: held by {} processes, made by {}", group, who.size(),
               creator == kInitProcess ? std::string("init")
                                       : fmt::format("pid {}", tree.processes[static_cast<size_t>(creator)].task.pid()));
  }

  find_shared_memory(tree);

  // One layout of the stub's own fds for every process: above every fd of every image.
  int base = 10;
  for (const auto& p : tree.processes) base = std::max(base, p.high_fd_base);
  for (auto& p : tree.processes) {
    p.high_fd_base = base;
    p.inherited_count = inherited;
    p.shared_count = static_cast<int>(tree.shared.size() + tree.shared_memory.size());
  }
  return tree;
}

}  // namespace stasis::restore
