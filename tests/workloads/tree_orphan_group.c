// tree_orphan_group: a process group whose leader has exited, as the last commands of a
// shell's pipeline leave one. The workload forks a leader, which makes a group of its own,
// forks two members into it and exits; the members, re-parented to the workload's nearest
// reaper, stay in the dead leader's group. Each iteration the workload checks that both are
// still in that group and that a signal to the group reaches them (kill(-pgid, 0)).
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  int p[2];
  if (pipe(p) < 0) {
    ws_failf("pipe: %s", strerror(errno));
  }
  pid_t members[2] = {0, 0};
  pid_t leader = fork();
  if (leader == 0) {
    setpgid(0, 0);
    for (int i = 0; i < 2; ++i) {
      pid_t m = fork();
      if (m == 0) {
        for (;;) ws_sleep_ms(100);  // stays, in the dead leader's group
      }
      if (write(p[1], &m, sizeof m) != sizeof m) _exit(1);
    }
    _exit(0);
  }
  close(p[1]);
  waitpid(leader, NULL, 0);
  for (int i = 0; i < 2; ++i)
    if (read(p[0], &members[i], sizeof members[i]) != sizeof members[i]) ws_failf("the leader did not say its members");
  close(p[0]);
  for (unsigned long long i = 1;; ++i) {
    for (int k = 0; k < 2 && !ws_failed(); ++k)
      if (getpgid(members[k]) != leader)
        ws_failf("member %d is in group %d, not %d", (int)members[k], (int)getpgid(members[k]), (int)leader);
    if (!ws_failed() && kill(-leader, 0) < 0) ws_failf("kill(-%d, 0): %s", (int)leader, strerror(errno));
    ws_write(i);
    ws_sleep_ms(10);
  }
}
