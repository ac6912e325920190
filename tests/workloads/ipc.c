// ipc: fills its container's IPC and UTS namespaces, then checks that they stay as it left them
// across checkpoint and restore, and that they keep working.
//
// At start it sets the hostname and domain name and two IPC sysctls, and creates a SysV shared
// memory segment (a pattern written, then detached), a semaphore set, a SysV message queue
// with three messages and a POSIX message queue with four messages of mixed priorities.
// Every iteration checks what needs no descriptor and no attach (those would block a dump):
// ids, sizes, modes, semaphore values, queue lengths, names. Once the file STATUS.verify
// exists (the test makes it after a restore) it checks everything in full once (contents,
// message order and priorities, sysctls), removes that file, and from then on uses every object each iteration.
// With "hold-mq" it keeps its POSIX queue open (a descriptor dump must refuse), with
// "rmid-forced" it sets kernel.shm_rmid_forced (dump must refuse its segment then).
#define _GNU_SOURCE
#include <mqueue.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include "workload_status.h"

#define SHM_KEY 0x51500001
#define SEM_KEY 0x51500002
#define MSG_KEY 0x51500003
#define SHM_SIZE (3 * 4096 + 100)
#define MQ_NAME "/stasis-ipc"
#define HOSTNAME "ipc-job"
#define DOMAINNAME "ipc-domain"

union semun {
  int val;
  struct semid_ds* buf;
  unsigned short* array;
};

static int shm_id, sem_id, msg_id;
static const unsigned short sem_values[3] = {1, 5, 42};
static const char* msg_texts[3] = {"first", "second message, longer", "third"};
static const long msg_types[3] = {1, 2, 1};
static const char* mq_texts[4] = {"low-a", "high", "low-b", "mid"};
static const unsigned mq_prios[4] = {1, 5, 1, 3};
// Receive order: highest priority first, FIFO within one priority.
static const int mq_order[4] = {1, 3, 0, 2};

struct msg {
  long type;
  char text[64];
};

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + 3); }

static int write_proc(const char* path, const char* value) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, value, strlen(value));
  close(fd);
  return n == (ssize_t)strlen(value) ? 0 : -1;
}

static long read_proc_long(const char* path) {
  char buf[64] = {0};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 0 ? strtol(buf, NULL, 10) : -1;
}

static void setup(void) {
  if (sethostname(HOSTNAME, strlen(HOSTNAME)) < 0) ws_failf("sethostname: %s", strerror(errno));
  if (setdomainname(DOMAINNAME, strlen(DOMAINNAME)) < 0) ws_failf("setdomainname: %s", strerror(errno));
  if (write_proc("/proc/sys/kernel/msgmnb", "32768") < 0) ws_failf("set kernel.msgmnb: %s", strerror(errno));
  if (write_proc("/proc/sys/fs/mqueue/msg_max", "20") < 0) ws_failf("set fs.mqueue.msg_max: %s", strerror(errno));

  shm_id = shmget(SHM_KEY, SHM_SIZE, IPC_CREAT | IPC_EXCL | 0640);
  if (shm_id < 0) ws_failf("shmget: %s", strerror(errno));
  unsigned char* p = shmat(shm_id, NULL, 0);
  if (p == (void*)-1) {
    ws_failf("shmat: %s", strerror(errno));
  } else {
    for (size_t i = 0; i < SHM_SIZE - 8; ++i) p[i] = pattern(i);
    shmdt(p);
  }

  sem_id = semget(SEM_KEY, 3, IPC_CREAT | IPC_EXCL | 0600);
  union semun arg = {.array = (unsigned short*)sem_values};
  if (sem_id < 0 || semctl(sem_id, 0, SETALL, arg) < 0) ws_failf("semaphores: %s", strerror(errno));

  msg_id = msgget(MSG_KEY, IPC_CREAT | IPC_EXCL | 0600);
  if (msg_id < 0) ws_failf("msgget: %s", strerror(errno));
  for (int i = 0; i < 3; ++i) {
    struct msg m = {.type = msg_types[i]};
    snprintf(m.text, sizeof m.text, "%s", msg_texts[i]);
    if (msgsnd(msg_id, &m, strlen(m.text) + 1, IPC_NOWAIT) < 0) ws_failf("msgsnd: %s", strerror(errno));
  }

  struct mq_attr attr = {.mq_maxmsg = 15, .mq_msgsize = 128};
  mode_t old = umask(0);
  mqd_t mq = mq_open(MQ_NAME, O_CREAT | O_EXCL | O_RDWR, 0640, &attr);
  umask(old);
  if (mq == (mqd_t)-1) {
    ws_failf("mq_open: %s", strerror(errno));
    return;
  }
  for (int i = 0; i < 4; ++i)
    if (mq_send(mq, mq_texts[i], strlen(mq_texts[i]) + 1, mq_prios[i]) < 0) ws_failf("mq_send: %s", strerror(errno));
  mq_close(mq);
}

// What needs neither a descriptor nor an attach.
static void light_check(void) {
  struct utsname u;
  if (uname(&u) < 0 || strcmp(u.nodename, HOSTNAME) != 0) ws_failf("hostname is '%s'", u.nodename);
  if (strcmp(u.domainname, DOMAINNAME) != 0) ws_failf("domain name is '%s'", u.domainname);
  struct shmid_ds sd;
  if (shmctl(shm_id, IPC_STAT, &sd) < 0) ws_failf("shm id %d: %s", shm_id, strerror(errno));
  else if (sd.shm_segsz != SHM_SIZE || (sd.shm_perm.mode & 0777) != 0640 || sd.shm_perm.__key != SHM_KEY)
    ws_failf("shm id %d: size %zu mode %o key %#x", shm_id, sd.shm_segsz, sd.shm_perm.mode & 0777,
             sd.shm_perm.__key);
  unsigned short values[3];
  union semun arg = {.array = values};
  if (semctl(sem_id, 0, GETALL, arg) < 0) ws_failf("sem id %d: %s", sem_id, strerror(errno));
  else if (memcmp(values, sem_values, sizeof values) != 0)
    ws_failf("semaphores are %u %u %u", values[0], values[1], values[2]);
  struct msqid_ds md;
  if (msgctl(msg_id, IPC_STAT, &md) < 0) ws_failf("msg id %d: %s", msg_id, strerror(errno));
  else if (md.msg_qnum != 3) ws_failf("msg queue holds %lu messages", (unsigned long)md.msg_qnum);
}

static void full_check(void) {
  if (shmget(SHM_KEY, 0, 0) != shm_id) ws_failf("shm key %#x no longer finds id %d", SHM_KEY, shm_id);
  if (semget(SEM_KEY, 0, 0) != sem_id) ws_failf("sem key no longer finds id %d", sem_id);
  if (msgget(MSG_KEY, 0) != msg_id) ws_failf("msg key no longer finds id %d", msg_id);
  if (read_proc_long("/proc/sys/kernel/msgmnb") != 32768) ws_failf("kernel.msgmnb is not 32768");
  if (read_proc_long("/proc/sys/fs/mqueue/msg_max") != 20) ws_failf("fs.mqueue.msg_max is not 20");

  unsigned char* p = shmat(shm_id, NULL, SHM_RDONLY);
  if (p == (void*)-1) {
    ws_failf("shmat: %s", strerror(errno));
  } else {
    for (size_t i = 0; i < SHM_SIZE; ++i) {
      unsigned char want = i < SHM_SIZE - 8 ? pattern(i) : 0;
      if (p[i] != want) {
        ws_failf("shm byte %zu is %u, not %u", i, p[i], want);
        break;
      }
    }
    shmdt(p);
  }

  // The SysV messages in order, then sent back.
  for (int i = 0; i < 3; ++i) {
    struct msg m;
    ssize_t n = msgrcv(msg_id, &m, sizeof m.text, 0, IPC_NOWAIT);
    if (n < 0) {
      ws_failf("msgrcv %d: %s", i, strerror(errno));
      return;
    }
    if (m.type != msg_types[i] || strcmp(m.text, msg_texts[i]) != 0)
      ws_failf("message %d is type %ld '%s'", i, m.type, m.text);
  }
  for (int i = 0; i < 3; ++i) {
    struct msg m = {.type = msg_types[i]};
    snprintf(m.text, sizeof m.text, "%s", msg_texts[i]);
    if (msgsnd(msg_id, &m, strlen(m.text) + 1, IPC_NOWAIT) < 0) ws_failf("msgsnd back: %s", strerror(errno));
  }

  mqd_t mq = mq_open(MQ_NAME, O_RDWR | O_NONBLOCK);
  if (mq == (mqd_t)-1) {
    ws_failf("mq_open %s: %s", MQ_NAME, strerror(errno));
    return;
  }
  struct mq_attr attr;
  struct stat st;
  if (mq_getattr(mq, &attr) < 0 || attr.mq_maxmsg != 15 || attr.mq_msgsize != 128 || attr.mq_curmsgs != 4)
    ws_failf("mq attributes: max %ld size %ld count %ld", attr.mq_maxmsg, attr.mq_msgsize, attr.mq_curmsgs);
  if (fstat(mq, &st) < 0 || (st.st_mode & 07777) != 0640) ws_failf("mq mode %o", st.st_mode & 07777);
  for (int i = 0; i < 4; ++i) {
    char buf[128];
    unsigned prio;
    ssize_t n = mq_receive(mq, buf, sizeof buf, &prio);
    if (n < 0) {
      ws_failf("mq_receive %d: %s", i, strerror(errno));
      break;
    }
    int want = mq_order[i];
    if (prio != mq_prios[want] || strcmp(buf, mq_texts[want]) != 0)
      ws_failf("mq message %d is '%s' priority %u, not '%s' %u", i, buf, prio, mq_texts[want], mq_prios[want]);
  }
  for (int i = 0; i < 4; ++i) mq_send(mq, mq_texts[i], strlen(mq_texts[i]) + 1, mq_prios[i]);
  mq_close(mq);
}

// Each object still works: a round trip through each, leaving it as it was.
static void exercise(unsigned long long n) {
  struct sembuf down = {.sem_num = 1, .sem_op = -1}, up = {.sem_num = 1, .sem_op = 1};
  if (semop(sem_id, &down, 1) < 0 || semop(sem_id, &up, 1) < 0) ws_failf("semop: %s", strerror(errno));
  struct msg m = {.type = 99};
  snprintf(m.text, sizeof m.text, "ping %llu", n);
  struct msg got;
  if (msgsnd(msg_id, &m, strlen(m.text) + 1, IPC_NOWAIT) < 0 || msgrcv(msg_id, &got, sizeof got.text, 99, IPC_NOWAIT) < 0 ||
      strcmp(got.text, m.text) != 0)
    ws_failf("msg round trip: %s", strerror(errno));
  mqd_t mq = mq_open(MQ_NAME, O_RDWR | O_NONBLOCK);
  char buf[128];
  unsigned prio;
  if (mq == (mqd_t)-1 || mq_send(mq, m.text, strlen(m.text) + 1, 9) < 0 || mq_receive(mq, buf, sizeof buf, &prio) < 0 ||
      prio != 9 || strcmp(buf, m.text) != 0)
    ws_failf("mq round trip: %s", strerror(errno));
  if (mq != (mqd_t)-1) mq_close(mq);
  unsigned char* p = shmat(shm_id, NULL, 0);
  if (p == (void*)-1) {
    ws_failf("shmat: %s", strerror(errno));
  } else {
    memcpy(p + SHM_SIZE - 8, &n, 8);
    if (p[0] != pattern(0)) ws_failf("shm byte 0 changed");
    shmdt(p);
  }
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE [hold-mq|rmid-forced]");
  char trigger[4200];
  snprintf(trigger, sizeof trigger, "%s.verify", argv[1]);
  setup();
  mqd_t held = (mqd_t)-1;
  if (argc > 2 && strcmp(argv[2], "hold-mq") == 0) held = mq_open(MQ_NAME, O_RDWR);
  if (argc > 2 && strcmp(argv[2], "rmid-forced") == 0 && write_proc("/proc/sys/kernel/shm_rmid_forced", "1") < 0)
    ws_failf("set kernel.shm_rmid_forced: %s", strerror(errno));
  int verified = 0;
  for (unsigned long long i = 1;; ++i) {
    if (!ws_failed()) light_check();
    if (!ws_failed() && !verified && access(trigger, F_OK) == 0) {
      full_check();
      verified = 1;
      unlink(trigger);  // tells the test the full check ran
    }
    if (!ws_failed() && verified) exercise(i);
    ws_write(i);
    ws_sleep_ms(10);
  }
  (void)held;
}
