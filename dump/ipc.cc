#include "dump/ipc.h"

#include <dirent.h>
#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/ns_thread.h"
#include "common/proc.h"
#include "images/image_file.h"

namespace stasis::dump {

namespace {

namespace fs = std::filesystem;

constexpr long kMqueueMagic = 0x19800202;  // MQUEUE_MAGIC
// A segment's contents go into one record, below the image format's record limit.
constexpr uint64_t kMaxSegmentBytes = 256ull << 20;

// The per-namespace sysctls restore writes before it creates anything (the limits the objects
// must fit in), then the next-id ones, which the job may have set for its next object.
constexpr const char* kLimits[] = {"kernel/shmmax",         "kernel/shmall",        "kernel/shmmni",
                                   "kernel/shm_rmid_forced", "kernel/msgmax",        "kernel/msgmnb",
                                   "kernel/msgmni",          "kernel/sem",           "fs/mqueue/queues_max",
                                   "fs/mqueue/msg_max",      "fs/mqueue/msgsize_max", "fs/mqueue/msg_default",
                                   "fs/mqueue/msgsize_default"};
constexpr const char* kNextIds[] = {"kernel/shm_next_id", "kernel/msg_next_id", "kernel/sem_next_id"};

union semun {
  int val;
  struct semid_ds* buf;
  unsigned short* array;
};

std::string read_sysctl(const std::string& name) {
  std::string value = read_file("/proc/sys/" + name);
  while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
  return value;
}

// The job's attachments of SysV segments ("/SYSV<key>" in maps, the shm id as inode), by id.
using Attachments = std::map<int, std::vector<proc::MapEntry>>;
Attachments sysv_attachments(pid_t pid) {
  Attachments out;
  for (auto& m : proc::read_maps(pid))
    if (m.path.rfind("/SYSV", 0) == 0) out[static_cast<int>(m.inode)].push_back(m);
  return out;
}

// Called on a thread inside the namespace from here on.

void collect_sysctls(const std::map<std::string, std::string>& fresh, std::vector<pb::IpcObject>& out) {
  for (const char* name : kLimits) {
    auto d = fresh.find(name);
    if (d == fresh.end()) continue;  // this kernel lacks it
    std::string value = read_sysctl(name);
    if (value == d->second) continue;
    auto* s = out.emplace_back().mutable_sysctl();
    s->set_name(name);
    s->set_value(value);
  }
  for (const char* name : kNextIds) {
    if (!fs::exists(fs::path("/proc/sys") / name)) continue;
    std::string value = read_sysctl(name);
    if (value == "-1") continue;  // the default: the kernel picks
    auto* s = out.emplace_back().mutable_sysctl();
    s->set_name(name);
    s->set_value(value);
  }
}

void fill_perm(const struct ipc_perm& p, int id, pb::IpcPerm* out) {
  out->set_key(p.__key);
  out->set_id(id);
  out->set_uid(p.uid);
  out->set_gid(p.gid);
  out->set_mode(p.mode & 0777);
}

// Restore can attach a segment again only where and as the job had it: the job must hold every
// attachment (nattch counts each VMA), each of the whole segment.
void check_attachments(pid_t pid, int id, const struct shmid_ds& ds, const std::vector<proc::MapEntry>& maps) {
  if (maps.size() != ds.shm_nattch)
    throw UnsupportedError(fmt::format(
        "SysV shared memory segment id {} (key {:#x}) is attached {} time(s), {} of them by the job (pid {}): a "
        "segment shared with a process outside the job is not supported",
        id, static_cast<unsigned>(ds.shm_perm.__key), ds.shm_nattch, maps.size(), pid));
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t whole = (ds.shm_segsz + page - 1) / page * page;
  for (const auto& m : maps)
    if (m.offset != 0 || m.end - m.start != whole)
      throw UnsupportedError(fmt::format("pid {}: vma {:#x}-{:#x} maps part of SysV shared memory segment id {} (offset "
                                         "{:#x}, {} of {} bytes): only whole attachments are supported",
                                         pid, m.start, m.end, id, m.offset, m.end - m.start, whole));
}

void collect_shm(pid_t pid, const Attachments& attachments, std::vector<pb::IpcObject>& out) {
  // Under kernel.shm_rmid_forced a segment goes away when its creator exits; the restorer's
  // helper thread would be the creator, and no restored segment would survive it.
  const bool rmid_forced = fs::exists("/proc/sys/kernel/shm_rmid_forced") && read_sysctl("kernel/shm_rmid_forced") != "0";
  struct shm_info info {};
  int max_index = ::shmctl(0, SHM_INFO, reinterpret_cast<struct shmid_ds*>(&info));
  if (max_index < 0) fail_errno(errno, "shmctl(SHM_INFO)");
  for (int index = 0; index <= max_index; ++index) {
    struct shmid_ds ds {};
    int id = ::shmctl(index, SHM_STAT, &ds);
    if (id < 0) {
      if (errno == EINVAL) continue;  // a free slot
      fail_errno(errno, "shmctl(index {}, SHM_STAT)", index);
    }
    if (rmid_forced)
      throw UnsupportedError(fmt::format("SysV shared memory segment id {}: kernel.shm_rmid_forced is set in the job's IPC "
                                         "namespace, under which restored segments (created by the restorer) would be "
                                         "destroyed: not supported",
                                         id));
    auto attached = attachments.find(id);
    check_attachments(pid, id, ds, attached == attachments.end() ? std::vector<proc::MapEntry>{} : attached->second);
    if (ds.shm_segsz > kMaxSegmentBytes)
      throw UnsupportedError(fmt::format("SysV shared memory segment id {} holds {} MiB: segments over {} MiB are not "
                                         "supported",
                                         id, ds.shm_segsz >> 20, kMaxSegmentBytes >> 20));
    auto* s = out.emplace_back().mutable_shm();
    fill_perm(ds.shm_perm, id, s->mutable_perm());
    s->set_size(ds.shm_segsz);
    s->set_locked(ds.shm_perm.mode & SHM_LOCKED);
    s->set_removed(ds.shm_perm.mode & SHM_DEST);
    void* at = ::shmat(id, nullptr, SHM_RDONLY);
    if (at == reinterpret_cast<void*>(-1)) fail_errno(errno, "shmat SysV segment id {} to read it", id);
    std::unique_ptr<void, int (*)(const void*)> detach(at, ::shmdt);
    const char* bytes = static_cast<const char*>(at);
    size_t used = ds.shm_segsz;
    while (used > 0 && bytes[used - 1] == 0) --used;  // a fresh segment is zeros
    s->set_contents(std::string(bytes, used));
  }
}

void collect_sem(std::vector<pb::IpcObject>& out) {
  struct seminfo info {};
  semun arg{};
  arg.buf = reinterpret_cast<struct semid_ds*>(&info);
  int max_index = ::semctl(0, 0, SEM_INFO, arg);
  if (max_index < 0) fail_errno(errno, "semctl(SEM_INFO)");
  for (int index = 0; index <= max_index; ++index) {
    struct semid_ds ds {};
    arg.buf = &ds;
    int id = ::semctl(index, 0, SEM_STAT, arg);
    if (id < 0) {
      if (errno == EINVAL) continue;
      fail_errno(errno, "semctl(index {}, SEM_STAT)", index);
    }
    auto* s = out.emplace_back().mutable_sem();
    fill_perm(ds.sem_perm, id, s->mutable_perm());
    std::vector<unsigned short> values(ds.sem_nsems);
    arg.array = values.data();
    if (::semctl(id, 0, GETALL, arg) < 0) fail_errno(errno, "semctl(semaphore set id {}, GETALL)", id);
    for (unsigned short v : values) s->add_values(v);
  }
}

void collect_msg(std::vector<pb::IpcObject>& out) {
  struct msginfo info {};
  int max_index = ::msgctl(0, MSG_INFO, reinterpret_cast<struct msqid_ds*>(&info));
  if (max_index < 0) fail_errno(errno, "msgctl(MSG_INFO)");
  for (int index = 0; index <= max_index; ++index) {
    struct msqid_ds ds {};
    int id = ::msgctl(index, MSG_STAT, &ds);
    if (id < 0) {
      if (errno == EINVAL) continue;
      fail_errno(errno, "msgctl(index {}, MSG_STAT)", index);
    }
    auto* q = out.emplace_back().mutable_msg();
    fill_perm(ds.msg_perm, id, q->mutable_perm());
    q->set_qbytes(ds.msg_qbytes);
    // No message is larger than all the bytes queued.
    std::vector<char> buf(sizeof(long) + ds.__msg_cbytes + 1);
    for (msgqnum_t n = 0; n < ds.msg_qnum; ++n) {
      // MSG_COPY: message number n, left in the queue.
      ssize_t size = ::msgrcv(id, buf.data(), buf.size() - sizeof(long), static_cast<long>(n),
                              IPC_NOWAIT | MSG_COPY);  // no MSG_NOERROR: never truncate
      if (size < 0 && errno == ENOSYS)
        throw UnsupportedError(fmt::format("SysV message queue id {} holds {} message(s), and this kernel cannot copy them "
                                           "without taking them (msgrcv MSG_COPY needs CONFIG_CHECKPOINT_RESTORE)",
                                           id, ds.msg_qnum));
      if (size < 0)
        fail_errno(errno, "msgrcv(message queue id {}, message {} of {}, MSG_COPY)", id, n, ds.msg_qnum);
      long type;
      std::memcpy(&type, buf.data(), sizeof type);
      auto* m = q->add_messages();
      m->set_type(type);
      m->set_data(std::string(buf.data() + sizeof(long), static_cast<size_t>(size)));
    }
  }
}

// "QSIZE:0 NOTIFY:0 SIGNO:0 NOTIFY_PID:0": the queue's file in the mqueue fs.
long notify_pid(int dir, const std::string& name) {
  UniqueFd f(::openat(dir, name.c_str(), O_RDONLY | O_CLOEXEC));
  if (!f) fail_errno(errno, "open POSIX message queue /{} in the mqueue fs", name);
  char text[256] = {};
  ssize_t n = ::read(f.get(), text, sizeof text - 1);
  if (n < 0) fail_errno(errno, "read POSIX message queue /{} in the mqueue fs", name);
  const char* p = std::strstr(text, "NOTIFY_PID:");
  return p ? std::strtol(p + std::strlen("NOTIFY_PID:"), nullptr, 10) : 0;
}

// The queue's messages, taken out and put back in the same order (a queue cannot be read in
// place); the job is frozen, so nobody sees it emptied for that moment.
void read_and_put_back(const std::string& name, pb::PosixQueue* q) {
  std::string path = "/" + name;
  mqd_t mq = ::mq_open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (mq == static_cast<mqd_t>(-1)) fail_errno(errno, "mq_open POSIX message queue {}", path);
  std::unique_ptr<void, void (*)(void*)> close_mq(reinterpret_cast<void*>(static_cast<intptr_t>(mq)), [](void* p) {
    ::mq_close(static_cast<mqd_t>(reinterpret_cast<intptr_t>(p)));
  });
  struct mq_attr attr {};
  if (::mq_getattr(mq, &attr) < 0) fail_errno(errno, "mq_getattr POSIX message queue {}", path);
  q->set_max_messages(attr.mq_maxmsg);
  q->set_message_size(attr.mq_msgsize);
  std::vector<char> buf(static_cast<size_t>(attr.mq_msgsize));
  std::string error;
  for (long i = 0; i < attr.mq_curmsgs; ++i) {
    unsigned priority = 0;
    ssize_t size = ::mq_receive(mq, buf.data(), buf.size(), &priority);
    if (size < 0) {
      error = fmt::format("mq_receive message {} of {} from POSIX message queue {}: {}", i + 1, attr.mq_curmsgs, path,
                          describe_errno(errno));
      break;
    }
    auto* m = q->add_messages();
    m->set_priority(priority);
    m->set_data(std::string(buf.data(), static_cast<size_t>(size)));
  }
  // Put back all we took, even after an error.
  for (const auto& m : q->messages()) {
    if (::mq_send(mq, m.data().data(), m.data().size(), m.priority()) < 0 && error.empty())
      error = fmt::format("mq_send a message back to POSIX message queue {}: {}", path, describe_errno(errno));
  }
  if (!error.empty()) fail("{}", error);
}

void collect_mqueues(std::vector<pb::IpcObject>& out) {
  // A detached mount of this namespace's mqueue fs, to list the queues: nothing is mounted
  // anywhere, and it goes away with its fd.
  UniqueFd context(::fsopen("mqueue", FSOPEN_CLOEXEC));
  if (!context) fail_errno(errno, "fsopen mqueue");
  check_sys(::fsconfig(context.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0), "fsconfig mqueue (create)");
  UniqueFd mount(::fsmount(context.get(), FSMOUNT_CLOEXEC, 0));
  if (!mount) fail_errno(errno, "fsmount mqueue");
  UniqueFd dir_fd(::openat(mount.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) fail_errno(errno, "open the root of the mqueue fs");
  std::vector<std::string> names;
  {
    DIR* dir = ::fdopendir(::dup(dir_fd.get()));
    if (!dir) fail_errno(errno, "fdopendir the mqueue fs");
    std::unique_ptr<DIR, int (*)(DIR*)> close_dir(dir, ::closedir);
    while (struct dirent* e = ::readdir(dir)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    struct stat st {};
    if (::fstatat(dir_fd.get(), name.c_str(), &st, 0) < 0) fail_errno(errno, "stat POSIX message queue /{}", name);
    if (long pid = notify_pid(dir_fd.get(), name); pid != 0)
      throw UnsupportedError(fmt::format("POSIX message queue /{} has a notification registered (mq_notify, by pid {}): "
                                         "not supported, the notification would be lost",
                                         name, pid));
    auto* q = out.emplace_back().mutable_mqueue();
    q->set_name(name);
    q->set_uid(st.st_uid);
    q->set_gid(st.st_gid);
    q->set_mode(st.st_mode & 07777);
    read_and_put_back(name, q);
  }
}

// A descriptor of a POSIX queue looks like a regular file "/name" in /proc/PID/fd.
void refuse_mqueue_descriptors(pid_t pid) {
  for (int fd : proc::list_fds(pid)) {
    std::string path = fmt::format("/proc/{}/fd/{}", pid, fd);
    struct statfs sfs {};
    if (::statfs(path.c_str(), &sfs) < 0) continue;  // closed meanwhile, or not reachable: files.cc judges those
    if (sfs.f_type == kMqueueMagic)
      throw UnsupportedError(fmt::format("pid {} fd {}: an open POSIX message queue descriptor ({}) is not supported; "
                                         "the queue itself is saved with the IPC namespace: close the descriptor "
                                         "(mq_close) before the dump",
                                         pid, fd, proc::read_link(path)));
  }
}

}  // namespace

std::vector<pb::IpcObject> collect_ipc(pid_t pid, const pb::NamespaceState& namespaces,
                                       const std::vector<pid_t>& processes) {
  bool own = false;
  for (const auto& ns : namespaces.namespaces())
    if (ns.kind() == "ipc") own = ns.own();
  // The attachments of every process of the job: each counts in a segment's nattch.
  Attachments attachments;
  for (pid_t p : processes.empty() ? std::vector<pid_t>{pid} : processes) {
    refuse_mqueue_descriptors(p);
    for (auto& [id, maps] : sysv_attachments(p)) {
      auto& all = attachments[id];
      all.insert(all.end(), maps.begin(), maps.end());
    }
  }
  if (!own) {
    // The segment is the host's: restore could not bring it back in a container's namespace.
    for (const auto& [id, maps] : attachments)
      throw UnsupportedError(fmt::format(
          "pid {}: vma {:#x}-{:#x} is an attached SysV shared memory segment (id {}) of the host's IPC namespace: not "
          "supported (the segments of a container's own IPC namespace are saved with it)",
          pid, maps.front().start, maps.front().end, id));
    return {};
  }
  std::map<std::string, std::string> fresh;
  run_in_fresh_namespaces(CLONE_NEWIPC, [&] {
    for (const char* name : kLimits)
      if (fs::exists(fs::path("/proc/sys") / name)) fresh[name] = read_sysctl(name);
  });
  std::vector<pb::IpcObject> out;
  with_context(fmt::format("read the IPC namespace of pid {}", pid), [&] {
    run_in_namespaces(pid, {"ipc"}, [&] {
      collect_sysctls(fresh, out);
      collect_shm(pid, attachments, out);
      collect_sem(out);
      collect_msg(out);
      collect_mqueues(out);
    });
  });
  log::debug("pid {}: {} IPC object(s) and sysctl(s) saved", pid, out.size());
  return out;
}

void write_ipc(const images::Checkpoint& checkpoint, const std::vector<pb::IpcObject>& objects) {
  if (objects.empty()) return;
  images::ImageWriter w(checkpoint.path(images::ImageType::Ipc), images::ImageType::Ipc);
  for (const auto& o : objects) w.write(o);
  w.close();
}

}  // namespace stasis::dump
