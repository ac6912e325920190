// tree_sysv: System V shared memory attached by a parent and its child (inherited across
// fork): one segment that stays, one removed (IPC_RMID) while both hold it. The child counts
// in both; the parent's progress is the child's count as it reads it in each, so a restore
// that gave each process its own copy stalls.
#include <signal.h>
#include <stdint.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/shm.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  int kept = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
  int removed = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
  if (kept < 0 || removed < 0) return 1;
  volatile uint64_t* a = shmat(kept, NULL, 0);
  volatile uint64_t* b = shmat(removed, NULL, 0);
  if (a == (void*)-1 || b == (void*)-1) return 1;
  shmctl(removed, IPC_RMID, NULL);
  if (fork() == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;) {
      ++a[0];
      ++b[0];
      ws_sleep_ms(5);
    }
  }
  for (;;) {
    ws_write(a[0] < b[0] ? a[0] : b[0]);
    ws_sleep_ms(10);
  }
}
