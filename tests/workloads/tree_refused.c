// tree_refused MODE: a tree with something restore does not bring back yet, so that dump must
// refuse it and leave it running. The parent (run as a container's PID 1) counts.
//   orphan-group: a grandchild whose process group leader (its parent) exited; it is
//                 re-parented to PID 1, in PID 1's session but in the dead leader's group
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 2, "STATUS_FILE orphan-group");
  const char* mode = argv[2];
  if (strcmp(mode, "orphan-group") == 0) {
    pid_t leader = fork();
    if (leader == 0) {
      setpgid(0, 0);
      if (fork() == 0) for (;;) ws_sleep_ms(100);  // stays, in the dead leader's group
      _exit(0);
    }
    waitpid(leader, NULL, 0);
  } else {
    ws_failf("unknown mode %s", mode);
  }
  for (unsigned long long i = 1;; ++i) {
    ws_write(i);
    ws_sleep_ms(10);
  }
}
