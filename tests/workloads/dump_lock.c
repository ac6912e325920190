// dump_lock: holds a lock on a file next to its status file, so that dump refuses it (file
// locks are not restored yet: the restored job would believe it still held the lock).
//   dump_lock STATUS_FILE flock|posix|ofd
#define _GNU_SOURCE
#include <sys/file.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 2, "STATUS_FILE flock|posix|ofd");
  char path[4200];
  snprintf(path, sizeof path, "%s.locked", argv[1]);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return 1;
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  int rc = -1;
  if (strcmp(argv[2], "flock") == 0) rc = flock(fd, LOCK_EX);
  else if (strcmp(argv[2], "posix") == 0) rc = fcntl(fd, F_SETLK, &fl);
  else if (strcmp(argv[2], "ofd") == 0) rc = fcntl(fd, F_OFD_SETLK, &fl);
  if (rc < 0) return 1;
  for (unsigned long long i = 1;; ++i) {
    ws_write(i);
    ws_sleep_ms(10);
  }
}
