// tree_zombie: a parent with three zombie children it has not waited for yet (one exited with
// 42, one killed by SIGTERM, one exited with 7 after joining the process group its live
// sibling leads) and a live child. Each iteration it checks, without reaping, that all are
// still there as zombies with their status (waitid WNOWAIT), the third in its sibling's group.
// Once the file STATUS.reap exists it reaps them, checks the statuses waitpid gives, and
// writes "reaped" to STATUS.reaped.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "workload_status.h"

static void check_zombie(pid_t pid, int code, int status) {
  siginfo_t info;
  memset(&info, 0, sizeof info);
  if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0) {
    ws_failf("waitid zombie %d: %s", (int)pid, strerror(errno));
    return;
  }
  if (info.si_pid != pid) ws_failf("zombie %d is not there to wait for", (int)pid);
  else if (info.si_code != code || info.si_status != status)
    ws_failf("zombie %d: code %d status %d, expected %d %d", (int)pid, info.si_code, info.si_status, code, status);
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  char reap_path[4200], reaped_path[4200];
  snprintf(reap_path, sizeof reap_path, "%s.reap", argv[1]);
  snprintf(reaped_path, sizeof reaped_path, "%s.reaped", argv[1]);
  pid_t live = fork();
  if (live == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setpgid(0, 0);
    for (;;) ws_sleep_ms(100);
  }
  setpgid(live, live);  // before the child's own call, for the next one to join
  pid_t grouped = fork();
  if (grouped == 0) {
    if (setpgid(0, live) < 0) _exit(99);
    _exit(7);
  }
  pid_t exited = fork();
  if (exited == 0) _exit(42);
  pid_t killed = fork();
  if (killed == 0) {
    for (;;) pause();
  }
  kill(killed, SIGTERM);
  siginfo_t info;
  waitid(P_PID, (id_t)exited, &info, WEXITED | WNOWAIT);
  waitid(P_PID, (id_t)killed, &info, WEXITED | WNOWAIT);
  waitid(P_PID, (id_t)grouped, &info, WEXITED | WNOWAIT);
  int reaped = 0;
  for (unsigned long long i = 1;; ++i) {
    if (!reaped) {
      check_zombie(exited, CLD_EXITED, 42);
      check_zombie(killed, CLD_KILLED, SIGTERM);
      check_zombie(grouped, CLD_EXITED, 7);
      if (getpgid(grouped) != live)
        ws_failf("zombie %d is in group %d, not its sibling's %d", (int)grouped, (int)getpgid(grouped), (int)live);
      struct stat st;
      if (stat(reap_path, &st) == 0) {
        int s1 = 0, s2 = 0;
        if (waitpid(exited, &s1, 0) != exited || !WIFEXITED(s1) || WEXITSTATUS(s1) != 42)
          ws_failf("waitpid %d: status %#x", (int)exited, s1);
        if (waitpid(killed, &s2, 0) != killed || !WIFSIGNALED(s2) || WTERMSIG(s2) != SIGTERM)
          ws_failf("waitpid %d: status %#x", (int)killed, s2);
        int s3 = 0;
        if (waitpid(grouped, &s3, 0) != grouped || !WIFEXITED(s3) || WEXITSTATUS(s3) != 7)
          ws_failf("waitpid %d: status %#x", (int)grouped, s3);
        reaped = 1;
        if (!ws_failed()) ws_tell(reaped_path, "reaped");
      }
    }
    ws_write(i);
    ws_sleep_ms(10);
  }
}
