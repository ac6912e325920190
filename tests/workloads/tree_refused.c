// tree_refused MODE: a tree with something restore does not bring back yet, so that dump must
// refuse it and leave it running. The parent counts; its children sleep.
//   zombie:         a child that exited and is never waited for
//   orphan-session: a grandchild whose session leader (its parent) exited; it is re-parented
//                   to PID 1 (this process, run as a container's PID 1)
//   shared-anon:    MAP_SHARED anonymous memory shared with a child after fork
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "workload_status.h"

static void sleeper(void) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  for (;;) ws_sleep_ms(100);
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 2, "STATUS_FILE zombie|orphan-session|shared-anon");
  const char* mode = argv[2];
  volatile unsigned long* shared = NULL;
  if (strcmp(mode, "zombie") == 0) {
    if (fork() == 0) _exit(7);
  } else if (strcmp(mode, "orphan-session") == 0) {
    pid_t leader = fork();
    if (leader == 0) {
      setsid();
      if (fork() == 0) for (;;) ws_sleep_ms(100);  // stays, in the dead leader's session
      _exit(0);
    }
    waitpid(leader, NULL, 0);
  } else if (strcmp(mode, "shared-anon") == 0) {
    shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) ws_failf("mmap: %s", strerror(errno));
    else {
      shared[0] = 1;
      if (fork() == 0) sleeper();
    }
  } else {
    ws_failf("unknown mode %s", mode);
  }
  for (unsigned long long i = 1;; ++i) {
    ws_write(i);
    ws_sleep_ms(10);
  }
}
