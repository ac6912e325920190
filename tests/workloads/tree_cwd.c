// tree_cwd: a parent working in a directory (STATUS.dir) and a child working in a directory
// that has been deleted since. Each checks its own each round: the parent that getcwd() is
// still its directory, the child that "." is a deleted directory (no links); the child sends
// a failure through a pipe.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  char dir[4200], gone[4200];
  snprintf(dir, sizeof dir, "%s.dir", argv[1]);
  snprintf(gone, sizeof gone, "%s.dir/gone", argv[1]);
  mkdir(dir, 0755);
  if (chdir(dir) < 0) return 1;
  int p[2];
  if (pipe(p) < 0) return 1;
  if (fork() == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(p[0]);
    mkdir(gone, 0755);
    if (chdir(gone) < 0 || rmdir(gone) < 0) _exit(1);
    for (;;) {
      struct stat st;
      if (stat(".", &st) < 0 || st.st_nlink != 0) {
        char msg[100] = "the child's working directory is not its deleted one";
        if (write(p[1], msg, sizeof msg) < 0) _exit(1);
        for (;;) pause();
      }
      ws_sleep_ms(10);
    }
  }
  close(p[1]);
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  for (unsigned long long i = 1;; ++i) {
    char msg[100], here[4200];
    if (read(p[0], msg, sizeof msg) == (ssize_t)sizeof msg) ws_failf("child: %s", msg);
    if (!getcwd(here, sizeof here) || strcmp(here, dir) != 0) ws_failf("the parent's working directory changed");
    ws_write(i);
    ws_sleep_ms(10);
  }
}
