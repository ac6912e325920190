// file_locks: locks that must come back, each on a file next to the status file:
//   A  flock LOCK_EX, through fd a and its dup
//   B  POSIX locks: write on bytes 100-199, read from 300 to the end; a second fd of B stays
//      open (closing any fd of B would drop the process's POSIX locks on it)
//   C  OFD write lock on the whole file
// Every iteration it probes each through open file descriptions of its own that hold nothing:
// flock on A must fail, F_OFD_GETLK on B and C must see exactly the locks above.
#define _GNU_SOURCE
#include <sys/file.h>

#include "workload_status.h"

static int open_next_to_status(const char* suffix) {
  char path[4200];
  snprintf(path, sizeof path, "%s.%s", ws_path, suffix);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "file_locks: open %s: %s\n", path, strerror(errno));
    exit(1);
  }
  return fd;
}

static void set_lock(int fd, int cmd, short type, off_t start, off_t len) {
  struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
  if (fcntl(fd, cmd, &fl) < 0) {
    fprintf(stderr, "file_locks: fcntl lock: %s\n", strerror(errno));
    exit(1);
  }
}

// The type of lock that a write lock on [start, start+len) through probe would meet.
static short conflict(int probe, off_t start, off_t len) {
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
  if (fcntl(probe, F_OFD_GETLK, &fl) < 0) return -1;
  return fl.l_type;
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  int a = open_next_to_status("a");
  int a_dup = dup(a);
  int b = open_next_to_status("b");
  int b_again = open_next_to_status("b");
  int c = open_next_to_status("c");
  int probe_a = open_next_to_status("a"), probe_b = open_next_to_status("b"), probe_c = open_next_to_status("c");
  if (a_dup < 0 || flock(a, LOCK_EX) < 0) {
    perror("file_locks: flock");
    return 1;
  }
  set_lock(b, F_SETLK, F_WRLCK, 100, 100);
  set_lock(b, F_SETLK, F_RDLCK, 300, 0);
  set_lock(c, F_OFD_SETLK, F_WRLCK, 0, 0);
  (void)b_again;
  for (unsigned long long iter = 1;; ++iter) {
    if (flock(probe_a, LOCK_EX | LOCK_NB) == 0) {
      flock(probe_a, LOCK_UN);
      ws_failf("A: the flock is gone");
    } else if (errno != EWOULDBLOCK) {
      ws_failf("A: flock probe: %s", strerror(errno));
    }
    if (conflict(probe_b, 100, 100) != F_WRLCK) ws_failf("B: the write lock on 100-199 is gone");
    if (conflict(probe_b, 300, 10) != F_RDLCK) ws_failf("B: the read lock from 300 is gone");
    if (conflict(probe_b, 220, 50) != F_UNLCK) ws_failf("B: 220-269 is locked, it should not be");
    if (conflict(probe_c, 0, 0) != F_WRLCK) ws_failf("C: the OFD lock is gone");
    ws_write(iter);
    ws_sleep_ms(20);
  }
}
