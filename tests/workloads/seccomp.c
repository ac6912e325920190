// seccomp: two threads under two seccomp filters installed with TSYNC, which must still be in
// force after restore:
//   filter 1: getppid fails with EPERM; getitimer kills the process
//   filter 2 (SECCOMP_FILTER_FLAG_LOG): set_robust_list and set_tid_address kill the process
// The workload never calls these once its threads run; a dump injects getitimer and a restore
// set_robust_list and set_tid_address in every thread, so a tool that does not keep the
// filters out of its own way kills the job.
// Every iteration each thread checks that getppid fails with EPERM and that its
// /proc/self/task/TID/status shows "Seccomp: 2" and its number of filters.
//   seccomp STATUS_FILE          as above: both threads share the two filters
//   seccomp STATUS_FILE split    the worker adds a third filter of its own (getsid fails
//                                with EACCES there, and only there)
//   seccomp STATUS_FILE notify   the worker's third filter hands getsid to a supervisor
//                                (SECCOMP_RET_USER_NOTIF), which a dump must refuse
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "workload_status.h"

#define ARCH_X86_64 0xc000003eU  // AUDIT_ARCH_X86_64

// Loads the arch, kills on a foreign one, then `ret_nr`/`ret_action` pairs, else allow.
static int install(int nrule, const uint32_t* nrs, const uint32_t* actions, unsigned flags) {
  struct sock_filter prog[64];
  int n = 0;
  prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH_X86_64, 1, 0);
  prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
  for (int i = 0; i < nrule; ++i) {
    prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nrs[i], 0, 1);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, actions[i]);
  }
  prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  struct sock_fprog fprog = {(unsigned short)n, prog};
  return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
}

static volatile unsigned long long worker_rounds;
static int split, notify;
static volatile int filters_on;      // set by main once both filters are in force
static volatile int worker_started;  // set by the worker: glibc's thread start-up is done

// getsid_errno: what getsid must fail with in this thread (0: it must work).
static void check_thread(const char* who, int filters, int getsid_errno) {
  errno = 0;
  long r = syscall(SYS_getppid);
  if (r != -1 || errno != EPERM) ws_failf("%s: getppid returned %ld (errno %d), expected EPERM", who, r, errno);
  errno = 0;
  r = syscall(SYS_getsid, 0);
  if (getsid_errno && (r != -1 || errno != getsid_errno))
    ws_failf("%s: getsid returned %ld (errno %d), expected errno %d", who, r, errno, getsid_errno);
  if (!getsid_errno && r < 0) ws_failf("%s: getsid failed: %s", who, strerror(errno));
  char path[64], text[4096];
  snprintf(path, sizeof path, "/proc/self/task/%ld/status", (long)syscall(SYS_gettid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof text - 1);
  if (fd >= 0) close(fd);
  if (n <= 0) {
    ws_failf("%s: read %s: %s", who, path, strerror(errno));
    return;
  }
  text[n] = 0;
  if (!strstr(text, "\nSeccomp:\t2\n")) ws_failf("%s: %s does not show Seccomp: 2", who, path);
  char want[64];
  snprintf(want, sizeof want, "\nSeccomp_filters:\t%d\n", filters);
  if (!strstr(text, want)) ws_failf("%s: %s does not show Seccomp_filters: %d", who, path, filters);
}

static void* worker(void* arg) {
  (void)arg;
  worker_started = 1;
  while (!filters_on) ws_sleep_ms(1);
  if (split || notify) {
    const uint32_t nrs[] = {SYS_getsid};
    const uint32_t act[] = {notify ? SECCOMP_RET_USER_NOTIF : SECCOMP_RET_ERRNO | EACCES};
    if (install(1, nrs, act, 0) != 0) ws_failf("worker: seccomp: %s", strerror(errno));
  }
  for (;;) {
    // Without a supervisor listening, a notifying filter fails the call with ENOSYS.
    check_thread("worker", split || notify ? 3 : 2, split ? EACCES : notify ? ENOSYS : 0);
    ++worker_rounds;
    ws_sleep_ms(10);
  }
  return NULL;
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE [split|notify]");
  split = argc > 2 && strcmp(argv[2], "split") == 0;
  notify = argc > 2 && strcmp(argv[2], "notify") == 0;
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0) {
    fprintf(stderr, "pthread_create failed\n");
    return 1;
  }
  // The new thread's start-up in glibc calls set_robust_list, which filter 2 forbids.
  while (!worker_started) ws_sleep_ms(1);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    perror("PR_SET_NO_NEW_PRIVS");
    return 1;
  }
  const uint32_t nrs1[] = {SYS_getppid, SYS_getitimer};
  const uint32_t act1[] = {SECCOMP_RET_ERRNO | EPERM, SECCOMP_RET_KILL_PROCESS};
  const uint32_t nrs2[] = {SYS_set_robust_list, SYS_set_tid_address};
  const uint32_t act2[] = {SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_KILL_PROCESS};
  if (install(2, nrs1, act1, SECCOMP_FILTER_FLAG_TSYNC) != 0 ||
      install(2, nrs2, act2, SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_LOG) != 0) {
    perror("seccomp");
    return 1;
  }
  filters_on = 1;
  unsigned long long last_rounds = 0;
  for (unsigned long long iter = 1;; ++iter) {
    check_thread("main", 2, 0);
    if (iter % 50 == 0) {  // the worker must keep going too
      if (worker_rounds == last_rounds) ws_failf("the worker thread stopped");
      last_rounds = worker_rounds;
    }
    ws_write(iter);
    ws_sleep_ms(20);
  }
}
