// attrs: task attributes that must come back, set once and checked every iteration:
//   main thread    parent-death signal SIGTERM, timer slack 123456 ns, I/O priority idle
//   worker thread  parent-death signal SIGHUP, timer slack 777000 ns, I/O priority best-effort 7,
//                  bound to CPU 0
//   process        child subreaper, oom_score_adj 345, coredump_filter 0x3f, and
//                  memory-deny-write-execute (mprotect to PROT_EXEC must fail)
//   UTS namespace  the NIS domain name given as second argument, if any (run it in a
//                  container: it changes the domain name of its UTS namespace)
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

#include "workload_status.h"

#define IOPRIO_WHO_PROCESS 1
#define IOPRIO_IDLE (3 << 13)
#define IOPRIO_BE7 ((2 << 13) | 7)
#define MDWE_SET 65
#define MDWE_GET 66

static void set_thread(int pdeathsig, unsigned long slack, int ioprio) {
  if (prctl(PR_SET_PDEATHSIG, pdeathsig) < 0 || prctl(PR_SET_TIMERSLACK, slack) < 0 ||
      syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, ioprio) < 0) {
    perror("attrs: set thread attributes");
    exit(1);
  }
}

static void check_thread(const char* who, int pdeathsig, unsigned long slack, int ioprio) {
  int sig = 0;
  prctl(PR_GET_PDEATHSIG, &sig);
  if (sig != pdeathsig) ws_failf("%s: parent-death signal %d, expected %d", who, sig, pdeathsig);
  long got_slack = prctl(PR_GET_TIMERSLACK);
  if (got_slack != (long)slack) ws_failf("%s: timer slack %ld, expected %lu", who, got_slack, slack);
  long prio = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
  if (prio != ioprio) ws_failf("%s: I/O priority %#lx, expected %#x", who, prio, ioprio);
}

static long read_number(const char* path, int base) {
  char text[64] = {0};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, text, sizeof text - 1) < 0) return -1;
  close(fd);
  return strtol(text, NULL, base);
}

static void write_text(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, text, strlen(text)) < 0) {
    fprintf(stderr, "attrs: write %s: %s\n", path, strerror(errno));
    exit(1);
  }
  close(fd);
}

static volatile int worker_ready;

static void* worker(void* arg) {
  (void)arg;
  set_thread(SIGHUP, 777000, IOPRIO_BE7);
  cpu_set_t cpu0;
  CPU_ZERO(&cpu0);
  CPU_SET(0, &cpu0);
  if (sched_setaffinity(0, sizeof cpu0, &cpu0) < 0) {
    perror("attrs: sched_setaffinity");
    exit(1);
  }
  worker_ready = 1;
  for (;;) {
    check_thread("worker", SIGHUP, 777000, IOPRIO_BE7);
    cpu_set_t now;
    if (sched_getaffinity(0, sizeof now, &now) < 0 || !CPU_EQUAL(&now, &cpu0))
      ws_failf("worker: no longer bound to CPU 0 alone (%d CPUs)", CPU_COUNT(&now));
    ws_sleep_ms(20);
  }
  return NULL;
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE [DOMAINNAME]");
  const char* domain = argc > 2 ? argv[2] : NULL;
  if (domain && setdomainname(domain, strlen(domain)) < 0) {
    perror("attrs: setdomainname");
    return 1;
  }
  set_thread(SIGTERM, 123456, IOPRIO_IDLE);
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0) return 1;
  while (!worker_ready) ws_sleep_ms(1);
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) return 1;
  write_text("/proc/self/oom_score_adj", "345");
  write_text("/proc/self/coredump_filter", "0x3f");
  // Memory-deny-write-execute came in Linux 6.3: on an older kernel (EINVAL) it is left out.
  int mdwe = prctl(MDWE_SET, 1, 0, 0, 0) == 0;
  if (!mdwe && errno != EINVAL) {
    perror("attrs: PR_SET_MDWE");
    return 1;
  }
  char* page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return 1;
  for (unsigned long long iter = 1;; ++iter) {
    check_thread("main", SIGTERM, 123456, IOPRIO_IDLE);
    int subreaper = 0;
    prctl(PR_GET_CHILD_SUBREAPER, &subreaper);
    if (!subreaper) ws_failf("no longer a child subreaper");
    if (read_number("/proc/self/oom_score_adj", 10) != 345) ws_failf("oom_score_adj is not 345");
    if (read_number("/proc/self/coredump_filter", 16) != 0x3f) ws_failf("coredump_filter is not 0x3f");
    if (mdwe && prctl(MDWE_GET, 0, 0, 0, 0) != 1) ws_failf("memory-deny-write-execute is off");
    if (mdwe && mprotect(page, 4096, PROT_READ | PROT_EXEC) == 0) ws_failf("a written page could be made executable");
    struct utsname uts;
    if (domain && (uname(&uts) < 0 || strcmp(uts.domainname, domain) != 0))
      ws_failf("the domain name is '%s', expected '%s'", uts.domainname, domain);
    ws_write(iter);
    ws_sleep_ms(20);
  }
}
