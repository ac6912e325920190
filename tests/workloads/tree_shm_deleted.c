// tree_shm_deleted: a parent and a child sharing a /dev/shm file that was mapped MAP_SHARED
// and unlinked at once, as sem_open and python's multiprocessing leave their semaphores. The
// child counts in it; the parent's progress is the child's count seen through the mapping, so
// a restore that copied the memory instead of sharing it stalls. The parent also checks that
// the child sees its own counter move, and that the bytes beyond the counters kept their pattern.
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include "workload_status.h"

struct shared {
  volatile uint64_t child_count;
  volatile uint64_t parent_count;
  volatile uint64_t child_saw;  // parent_count as the child last read it
  unsigned char pattern[4000];
};

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  char path[64];
  snprintf(path, sizeof path, "/dev/shm/stasis-shm-deleted-%d", (int)getpid());
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate(fd, 8192) < 0) ws_failf("cannot make %s", path);
  struct shared* mem = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mem == MAP_FAILED) ws_failf("cannot map %s", path);
  unlink(path);
  close(fd);  // mapped only
  for (int i = 0; i < (int)sizeof mem->pattern; ++i) mem->pattern[i] = (unsigned char)(i * 7 + 1);
  if (fork() == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;) {
      ++mem->child_count;
      mem->child_saw = mem->parent_count;
      ws_sleep_ms(5);
    }
  }
  for (;;) {
    ++mem->parent_count;
    if (mem->parent_count > 300 && mem->parent_count - mem->child_saw > 200)
      ws_failf("the child does not see the shared file move (%llu vs %llu)", (unsigned long long)mem->parent_count,
               (unsigned long long)mem->child_saw);
    for (int i = 0; i < (int)sizeof mem->pattern; ++i)
      if (mem->pattern[i] != (unsigned char)(i * 7 + 1)) ws_failf("byte %d of the shared file changed", i);
    ws_write(mem->child_count);
    ws_sleep_ms(10);
  }
}
