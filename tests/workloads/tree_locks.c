// tree_locks: file locks held by one process of a tree. The parent takes a flock on a file
// and forks: its child shares that open file (and so the flock), and takes a POSIX write
// lock on bytes 0-9 through a file it opens itself. Each iteration the parent checks that
// the child (by pid) holds the POSIX lock (F_GETLK) and that the flock is held (a new open of
// the file cannot take it).
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  char path[4200];
  snprintf(path, sizeof path, "%s.lockfile", argv[1]);
  int fd = open(path, O_RDWR | O_CREAT, 0644);
  if (fd < 0 || flock(fd, LOCK_EX) < 0) return 1;
  int ready[2];
  if (pipe(ready) < 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int own = open(path, O_RDWR);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
    if (own < 0 || fcntl(own, F_SETLK, &fl) < 0) _exit(1);
    if (write(ready[1], "x", 1) != 1) _exit(1);
    for (;;) pause();
  }
  char c;
  if (read(ready[0], &c, 1) != 1) ws_failf("the child could not lock");
  for (unsigned long long i = 1;; ++i) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
    if (fcntl(fd, F_GETLK, &fl) < 0) ws_failf("F_GETLK: %s", strerror(errno));
    else if (fl.l_type != F_WRLCK || fl.l_pid != child)
      ws_failf("the POSIX lock on bytes 0-9 is not the child's (type %d, pid %d, child %d)", fl.l_type, (int)fl.l_pid,
               (int)child);
    int other = open(path, O_RDONLY);
    if (other < 0) ws_failf("open %s: %s", path, strerror(errno));
    else {
      if (flock(other, LOCK_EX | LOCK_NB) == 0) ws_failf("the flock is not held any more");
      close(other);
    }
    ws_write(i);
    ws_sleep_ms(10);
  }
}
