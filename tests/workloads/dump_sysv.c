// dump_sysv: attaches a SysV shared memory segment, so that dump refuses it. The segment is
// marked for removal at once: it goes away with the process, whatever happens.
#include <sys/ipc.h>
#include <sys/shm.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  int id = shmget(IPC_PRIVATE, 65536, IPC_CREAT | 0600);
  if (id < 0) return 1;
  char* p = shmat(id, NULL, 0);
  shmctl(id, IPC_RMID, NULL);
  if (p == (char*)-1) return 1;
  memset(p, 7, 65536);
  for (unsigned long long i = 1;; ++i) {
    ws_write(i);
    ws_sleep_ms(10);
  }
}
