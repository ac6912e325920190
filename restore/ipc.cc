#include "restore/ipc.h"

#include <fcntl.h>
#include <mqueue.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include <cstring>
#include <memory>
#include <string_view>

#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/ns_thread.h"
#include "images/image_file.h"

namespace stasis::restore {

namespace {

union semun {
  int val;
  struct semid_ds* buf;
  unsigned short* array;
};

bool is_next_id(const pb::IpcSysctl& s) {
  std::string_view name = s.name();
  return name.size() >= 8 && name.substr(name.size() - 8) == "_next_id";
}

// Called on a thread inside the namespace from here on.

void write_sysctl(const pb::IpcSysctl& s) {
  if (s.name().empty() || s.name().find("..") != std::string::npos || s.name().front() == '/')
    fail("ipc.img: {} is not the name of an IPC sysctl", s.name());
  try {
    write_file("/proc/sys/" + s.name(), s.value());
  } catch (const Error& e) {
    fail("set {} to \"{}\" in the restored container's IPC namespace: {} (this host refuses the value the job had)",
         s.name(), s.value(), e.what());
  }
}

// The next System V object of that kind gets id `id`.
void set_next_id(std::string_view kind, int id) {
  write_file(fmt::format("/proc/sys/kernel/{}_next_id", kind), std::to_string(id));
}

void check_id(std::string_view what, int got, const pb::IpcPerm& perm) {
  if (got < 0) fail_errno(errno, "create {} id {} (key {:#x})", what, perm.id(), static_cast<unsigned>(perm.key()));
  if (got != perm.id())
    fail("{} id {} (key {:#x}) came back with id {}: kernel.*_next_id did not take", what, perm.id(),
         static_cast<unsigned>(perm.key()), got);
}

// Owner and mode through IPC_SET, on the ipc_perm of a freshly IPC_STATed object.
void set_perm(struct ipc_perm& p, const pb::IpcPerm& perm) {
  p.uid = perm.uid();
  p.gid = perm.gid();
  p.mode = static_cast<unsigned short>(perm.mode() & 0777);
}

void restore_shm(const pb::ShmSegment& s, HeldSegments& held) {
  const auto& perm = s.perm();
  set_next_id("shm", perm.id());
  int id = ::shmget(perm.key(), s.size(), IPC_CREAT | IPC_EXCL | static_cast<int>(perm.mode() & 0777));
  check_id("SysV shared memory segment", id, perm);
  if (!s.contents().empty()) {
    if (s.contents().size() > s.size())
      fail("ipc.img: SysV segment id {} holds {} bytes of contents for {} bytes", id, s.contents().size(), s.size());
    void* at = ::shmat(id, nullptr, 0);
    if (at == reinterpret_cast<void*>(-1)) fail_errno(errno, "shmat SysV segment id {} to fill it", id);
    std::memcpy(at, s.contents().data(), s.contents().size());
    ::shmdt(at);
  }
  struct shmid_ds ds {};
  check_sys(::shmctl(id, IPC_STAT, &ds), "shmctl(SysV segment id {}, IPC_STAT)", id);
  set_perm(ds.shm_perm, perm);
  check_sys(::shmctl(id, IPC_SET, &ds), "shmctl(SysV segment id {}, IPC_SET)", id);
  if (s.locked()) check_sys(::shmctl(id, SHM_LOCK, nullptr), "shmctl(SysV segment id {}, SHM_LOCK)", id);
  if (s.removed()) {
    // Removed while attached: it stays (under IPC_PRIVATE) while attached. Ours holds it until
    // the job's own attachment is back.
    void* at = ::shmat(id, nullptr, SHM_RDONLY);
    if (at == reinterpret_cast<void*>(-1)) fail_errno(errno, "shmat SysV segment id {} to hold it", id);
    held.hold(at);
    check_sys(::shmctl(id, IPC_RMID, nullptr), "shmctl(SysV segment id {}, IPC_RMID)", id);
  }
}

void restore_sem(const pb::SemSet& s) {
  const auto& perm = s.perm();
  set_next_id("sem", perm.id());
  int id = ::semget(perm.key(), s.values_size(), IPC_CREAT | IPC_EXCL | static_cast<int>(perm.mode() & 0777));
  check_id("SysV semaphore set", id, perm);
  std::vector<unsigned short> values(s.values().begin(), s.values().end());
  semun arg{};
  arg.array = values.data();
  check_sys(::semctl(id, 0, SETALL, arg), "semctl(SysV semaphore set id {}, SETALL)", id);
  struct semid_ds ds {};
  arg.buf = &ds;
  check_sys(::semctl(id, 0, IPC_STAT, arg), "semctl(SysV semaphore set id {}, IPC_STAT)", id);
  set_perm(ds.sem_perm, perm);
  check_sys(::semctl(id, 0, IPC_SET, arg), "semctl(SysV semaphore set id {}, IPC_SET)", id);
}

void restore_msg(const pb::MsgQueue& q) {
  const auto& perm = q.perm();
  set_next_id("msg", perm.id());
  int id = ::msgget(perm.key(), IPC_CREAT | IPC_EXCL | static_cast<int>(perm.mode() & 0777));
  check_id("SysV message queue", id, perm);
  struct msqid_ds ds {};
  check_sys(::msgctl(id, IPC_STAT, &ds), "msgctl(SysV message queue id {}, IPC_STAT)", id);
  ds.msg_qbytes = q.qbytes();  // before the messages, which may need more than the default
  check_sys(::msgctl(id, IPC_SET, &ds), "msgctl(SysV message queue id {}, IPC_SET msg_qbytes {})", id, q.qbytes());
  std::vector<char> buf;
  for (int i = 0; i < q.messages_size(); ++i) {
    const auto& m = q.messages(i);
    buf.resize(sizeof(long) + m.data().size());
    long type = m.type();
    std::memcpy(buf.data(), &type, sizeof type);
    std::memcpy(buf.data() + sizeof(long), m.data().data(), m.data().size());
    check_sys(::msgsnd(id, buf.data(), m.data().size(), IPC_NOWAIT), "msgsnd message {} of {} to SysV message queue id {}",
              i + 1, q.messages_size(), id);
  }
  check_sys(::msgctl(id, IPC_STAT, &ds), "msgctl(SysV message queue id {}, IPC_STAT)", id);
  set_perm(ds.msg_perm, perm);
  check_sys(::msgctl(id, IPC_SET, &ds), "msgctl(SysV message queue id {}, IPC_SET)", id);
}

void restore_mqueue(const pb::PosixQueue& q) {
  if (q.name().empty() || q.name().find('/') != std::string::npos)
    fail("ipc.img: \"{}\" is not the name of a POSIX message queue", q.name());
  const std::string path = "/" + q.name();
  struct mq_attr attr {};
  attr.mq_maxmsg = q.max_messages();
  attr.mq_msgsize = q.message_size();
  mqd_t mq = ::mq_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK | O_CLOEXEC, q.mode() & 07777, &attr);
  if (mq == static_cast<mqd_t>(-1))
    fail_errno(errno, "mq_open POSIX message queue {} (max {} messages of {} bytes)", path, attr.mq_maxmsg,
               attr.mq_msgsize);
  UniqueFd fd(mq);  // a queue descriptor is an fd on Linux
  // The umask took bits off the mode.
  check_sys(::fchmod(fd.get(), q.mode() & 07777), "chmod POSIX message queue {} to {:o}", path, q.mode() & 07777);
  check_sys(::fchown(fd.get(), q.uid(), q.gid()), "chown POSIX message queue {} to {}:{}", path, q.uid(), q.gid());
  for (int i = 0; i < q.messages_size(); ++i) {
    const auto& m = q.messages(i);
    check_sys(::mq_send(mq, m.data().data(), m.data().size(), m.priority()),
              "mq_send message {} of {} to POSIX message queue {}", i + 1, q.messages_size(), path);
  }
}

}  // namespace

std::vector<pb::IpcObject> load_ipc(const images::Checkpoint& checkpoint) {
  using images::ImageType;
  if (!checkpoint.exists(ImageType::Ipc)) return {};
  return images::read_all<pb::IpcObject>(checkpoint.path(ImageType::Ipc), ImageType::Ipc);
}

void HeldSegments::release() {
  for (void* address : addresses_) ::shmdt(address);
  addresses_.clear();
}

HeldSegments restore_ipc(pid_t pid, const std::vector<pb::IpcObject>& objects) {
  HeldSegments held;
  if (objects.empty()) return held;
  with_context("restore the container's IPC namespace", [&] {
    run_in_namespaces(pid, {"ipc"}, [&] {
      for (const auto& o : objects)
        if (o.has_sysctl() && !is_next_id(o.sysctl())) write_sysctl(o.sysctl());
      for (const auto& o : objects) {
        switch (o.kind_case()) {
          case pb::IpcObject::kShm: restore_shm(o.shm(), held); break;
          case pb::IpcObject::kSem: restore_sem(o.sem()); break;
          case pb::IpcObject::kMsg: restore_msg(o.msg()); break;
          case pb::IpcObject::kMqueue: restore_mqueue(o.mqueue()); break;
          case pb::IpcObject::kSysctl: break;
          case pb::IpcObject::KIND_NOT_SET: fail("ipc.img: a record of no known kind (written by a newer stasis?)");
        }
      }
      for (const auto& o : objects)
        if (o.has_sysctl() && is_next_id(o.sysctl())) write_sysctl(o.sysctl());
    });
  });
  log::debug("restored {} IPC object(s) and sysctl(s) in the namespace of pid {}", objects.size(), pid);
  return held;
}

void attach_segment(Remote& r, const pb::Vma& vma) {
  const auto& flags = vma.vm_flags();
  // Attached read-only unless it may be made writable ("mw"): an attachment made writable
  // and then mprotect()ed read-only can be made writable again.
  const bool may_write = std::find(flags.begin(), flags.end(), "mw") != flags.end() || (vma.prot() & PROT_WRITE);
  const bool exec = vma.prot() & PROT_EXEC;
  const int shmflg = (may_write ? 0 : SHM_RDONLY) | (exec ? SHM_EXEC : 0);
  const long rc = r.call(SYS_shmat, vma.shmem_id(), vma.start(), static_cast<uint64_t>(shmflg));
  if (rc < 0 || static_cast<uint64_t>(rc) != vma.start())
    fail("attach SysV shared memory segment id {} at {:#x}: {}", vma.shmem_id(), vma.start(),
         rc < 0 ? describe_errno(static_cast<int>(-rc)) : fmt::format("attached at {:#x} instead", rc));
  const uint32_t given = PROT_READ | (may_write ? PROT_WRITE : 0) | (exec ? PROT_EXEC : 0);
  if (vma.prot() != given)
    r.call_checked("mprotect SysV segment", SYS_mprotect, vma.start(), vma.end() - vma.start(), vma.prot());
}

}  // namespace stasis::restore
