// tree_subreaper: a session whose leader has exited, its member adopted by a subreaper that
// is not PID 1 (a supervisor's shape: runit, s6, `tini -s`). The job's first process forks S,
// which becomes a child subreaper and forks L; L makes a session of its own (setsid), forks M
// and exits; S reaps L, and M, orphaned, is S's child now, in L's session. M counts in memory
// shared with the others and checks each iteration that its parent is S and its session L's;
// S checks that M is its child (waitpid WNOHANG) and that it is still a subreaper. Progress:
// M's count, through the shared memory; a failure of M or S, or either gone, is a FAIL.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "workload_status.h"

struct shared {
  volatile uint64_t count;
  volatile pid_t s, l, m;
  char failure[256];
};

static void fail_shared(struct shared* sh, const char* who, const char* what) {
  if (!sh->failure[0]) snprintf(sh->failure, sizeof sh->failure, "%s: %s", who, what);
}

static void run_m(struct shared* sh) {
  // Adopted once L has exited, a moment after the fork: wait for it (up to 5 s).
  for (int waited = 0; getppid() != sh->s && waited < 5000; ++waited) ws_sleep_ms(1);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  for (;;) {
    if (getppid() != sh->s) fail_shared(sh, "M", "its parent is not the subreaper");
    if (getsid(0) != sh->l) fail_shared(sh, "M", "it is not in the session of its exited leader");
    ++sh->count;
    ws_sleep_ms(10);
  }
}

static void run_s(struct shared* sh) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) fail_shared(sh, "S", "PR_SET_CHILD_SUBREAPER");
  sh->s = getpid();
  pid_t l = fork();
  if (l == 0) {
    setsid();
    sh->l = getpid();
    pid_t m = fork();
    if (m == 0) run_m(sh);
    sh->m = m;
    _exit(0);
  }
  int status;
  waitpid(l, &status, 0);
  for (;;) {
    if (waitpid(sh->m, &status, WNOHANG) != 0) fail_shared(sh, "S", "M is not its child, or is gone");
    int subreaper = 0;
    if (prctl(PR_GET_CHILD_SUBREAPER, &subreaper) < 0 || !subreaper) fail_shared(sh, "S", "it is no subreaper any more");
    ws_sleep_ms(10);
  }
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  struct shared* sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) return 1;
  pid_t s = fork();
  if (s == 0) run_s(sh);
  while (sh->m == 0) ws_sleep_ms(1);
  for (;;) {
    if (sh->failure[0]) ws_failf("%s", sh->failure);
    int status;
    if (waitpid(s, &status, WNOHANG) == s) ws_failf("S (pid %d) is gone (status %#x)", s, status);
    ws_write(sh->count);
    ws_sleep_ms(10);
  }
}
