// ipc_attached: keeps System V shared memory segments attached across checkpoint and restore:
// one by key read-write, one read-only, and one removed (IPC_RMID) while attached, which lives
// on only through the attachment. Every iteration writes a counter through the mappings and
// checks the last one is still there, checks the segments' ids, sizes and attach counts, and
// attaches the first a second time to see that its mapping is the segment, not a copy.
// With "partial" it unmaps the last page of an attachment (a dump must refuse that).
#define _GNU_SOURCE
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>

#include "workload_status.h"

#define KEY 0x51500011
#define SIZE (5 * 4096)

static unsigned char pattern(size_t i) { return (unsigned char)(i * 13 + 1); }

static int make(key_t key, unsigned char** at, int shmflg) {
  int id = shmget(key, SIZE, IPC_CREAT | IPC_EXCL | 0600);
  if (id < 0) ws_failf("shmget: %s", strerror(errno));
  unsigned char* p = shmat(id, NULL, 0);
  if (p == (void*)-1) ws_failf("shmat: %s", strerror(errno));
  for (size_t i = 0; i < SIZE; ++i) p[i] = pattern(i);
  if (shmflg) {  // again, as asked
    shmdt(p);
    p = shmat(id, NULL, shmflg);
    if (p == (void*)-1) ws_failf("shmat: %s", strerror(errno));
  }
  *at = p;
  return id;
}

static void check_segment(const char* what, int id, int removed) {
  struct shmid_ds ds;
  if (shmctl(id, IPC_STAT, &ds) < 0) {
    ws_failf("%s: shm id %d: %s", what, id, strerror(errno));
    return;
  }
  if (ds.shm_segsz != SIZE || ds.shm_nattch != 1 || !!(ds.shm_perm.mode & SHM_DEST) != removed)
    ws_failf("%s: size %zu, %lu attachments, mode %o", what, ds.shm_segsz, (unsigned long)ds.shm_nattch,
             ds.shm_perm.mode);
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE [partial]");
  unsigned char *a, *ro, *gone;
  int a_id = make(KEY, &a, 0);
  int ro_id = make(IPC_PRIVATE, &ro, SHM_RDONLY);
  int gone_id = make(IPC_PRIVATE, &gone, 0);
  if (shmctl(gone_id, IPC_RMID, NULL) < 0) ws_failf("IPC_RMID: %s", strerror(errno));
  if (argc > 2 && strcmp(argv[2], "partial") == 0) munmap(a + SIZE - 4096, 4096);
  unsigned long long last = 0;
  for (unsigned long long i = 1;; ++i) {
    if (!ws_failed()) {
      unsigned long long seen_a, seen_gone;
      memcpy(&seen_a, a, 8);
      memcpy(&seen_gone, gone + 8, 8);
      if (last && (seen_a != last || seen_gone != last))
        ws_failf("counters %llu and %llu, expected %llu", seen_a, seen_gone, last);
      memcpy(a, &i, 8);
      memcpy(gone + 8, &i, 8);
      last = i;
      for (size_t k = 16; k < SIZE - 4096; ++k)
        if (a[k] != pattern(k) || ro[k] != pattern(k) || gone[k] != pattern(k)) {
          ws_failf("byte %zu differs", k);
          break;
        }
      check_segment("keyed", a_id, 0);
      check_segment("read-only", ro_id, 0);
      check_segment("removed", gone_id, 1);
      if (shmget(KEY, 0, 0) != a_id) ws_failf("key %#x no longer finds id %d", KEY, a_id);
      unsigned char* again = shmat(a_id, NULL, SHM_RDONLY);
      if (again == (void*)-1) {
        ws_failf("shmat again: %s", strerror(errno));
      } else {
        if (memcmp(again, &i, 8) != 0) ws_failf("a second attachment does not see the first's write");
        shmdt(again);
      }
    }
    ws_write(i);
    ws_sleep_ms(10);
  }
}
