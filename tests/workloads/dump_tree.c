// dump_tree: a parent and one child, both sleeping; dump --pid takes both. The child dies
// with its parent (PR_SET_PDEATHSIG).
#include <signal.h>
#include <sys/prctl.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  pid_t child = fork();
  if (child < 0) return 1;
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;) ws_sleep_ms(100);
  }
  for (unsigned long long i = 1;; ++i) {
    ws_write(i);
    ws_sleep_ms(10);
  }
}
