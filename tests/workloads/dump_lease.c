// dump_lease: holds a read lease (F_SETLEASE) on a file next to its status file, so that dump
// refuses it (leases are not restored).
#define _GNU_SOURCE

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  char path[4200];
  snprintf(path, sizeof path, "%s.leased", argv[1]);
  int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0 || fcntl(fd, F_SETLEASE, F_RDLCK) < 0) {
    perror("dump_lease");
    return 1;
  }
  for (unsigned long long i = 1;; ++i) {
    ws_write(i);
    ws_sleep_ms(10);
  }
}
