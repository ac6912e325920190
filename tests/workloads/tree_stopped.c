// tree_stopped: a parent with two children stopped by job control, one by SIGSTOP and one
// by SIGTSTP, each counting in memory shared with the parent, a count a millisecond, whenever
// it runs. Each iteration the parent checks that neither count moves (a stopped child runs
// nothing). Once the file STATUS.cont exists it sends both SIGCONT and checks that both
// counts move again, then writes "continued" to STATUS.continued.
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "workload_status.h"

// Each child is a process group of its own, its parent being in another group of the same
// session: in an orphaned group (the parent's own, when it is the session leader's) the
// kernel would discard SIGTSTP.
static pid_t counting_child(volatile unsigned long long* count) {
  pid_t pid = fork();
  if (pid > 0) setpgid(pid, pid);
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGTSTP, SIG_DFL);
    for (;;) {
      ++*count;
      ws_sleep_ms(1);
    }
  }
  return pid;
}

// Stops the child with sig and waits until its parent is told (WUNTRACED).
static void stop_child(pid_t pid, int sig) {
  kill(pid, sig);
  int status = 0;
  if (waitpid(pid, &status, WUNTRACED) != pid || !WIFSTOPPED(status) || WSTOPSIG(status) != sig)
    ws_failf("child %d did not stop by signal %d (status %#x)", (int)pid, sig, status);
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  char cont_path[4200], continued_path[4200];
  snprintf(cont_path, sizeof cont_path, "%s.cont", argv[1]);
  snprintf(continued_path, sizeof continued_path, "%s.continued", argv[1]);
  volatile unsigned long long* counts =
      mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (counts == MAP_FAILED) {
    ws_failf("mmap: %s", strerror(errno));
    for (unsigned long long i = 1;; ++i) ws_write(i), ws_sleep_ms(100);
  }
  pid_t stopped = counting_child(&counts[0]);
  pid_t tstopped = counting_child(&counts[1]);
  ws_sleep_ms(20);
  stop_child(stopped, SIGSTOP);
  stop_child(tstopped, SIGTSTP);
  int continued = 0;
  for (unsigned long long i = 1;; ++i) {
    unsigned long long a = counts[0], b = counts[1];
    ws_sleep_ms(20);
    struct stat st;
    if (!continued && stat(cont_path, &st) == 0) {
      kill(stopped, SIGCONT);
      kill(tstopped, SIGCONT);
      ws_sleep_ms(50);
      if (counts[0] == a) ws_failf("the SIGSTOPped child did not count on after SIGCONT");
      if (counts[1] == b) ws_failf("the SIGTSTPped child did not count on after SIGCONT");
      continued = 1;
      if (!ws_failed()) ws_tell(continued_path, "continued");
    } else if (!continued) {
      if (counts[0] != a) ws_failf("the SIGSTOPped child ran: its count went from %llu to %llu", a, counts[0]);
      if (counts[1] != b) ws_failf("the SIGTSTPped child ran: its count went from %llu to %llu", b, counts[1]);
    }
    ws_write(i);
  }
}
