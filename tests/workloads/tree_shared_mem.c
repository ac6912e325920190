// tree_shared_mem: a parent and a child sharing memory three ways: MAP_SHARED anonymous
// memory mapped before fork (and mapped a second time in the parent with mremap), and a memfd
// mapped before fork. The child counts in each; the parent's progress is the child's count as
// seen through the shared memory, so a restore that copied it instead of sharing it stalls.
// The parent also checks that the child sees its own counter move (the child records what it
// saw), and that its second mapping shows the same bytes as the first. With "fd", the memfd
// stays open too: one description inherited by both (its offset, moved to 100 before the
// fork, must stay there) and one the child opens on its own; reads through each must show
// what the mappings hold, so a restore that made the fds' memfd apart from the mappings' fails.
#define _GNU_SOURCE
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "workload_status.h"

struct shared {
  volatile uint64_t child_count;
  volatile uint64_t parent_count;
  volatile uint64_t child_saw;  // parent_count as the child last read it
};

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE [fd]");
  const int keep_fd = argc > 2 && strcmp(argv[2], "fd") == 0;
  struct shared* anon = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  int mfd = (int)syscall(SYS_memfd_create, "tree-shared", 0);
  if (anon == MAP_FAILED || mfd < 0 || ftruncate(mfd, 4096) < 0) return 1;
  struct shared* mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  if (mem == MAP_FAILED) return 1;
  if (!keep_fd) close(mfd);  // mapped only
  else if (lseek(mfd, 100, SEEK_SET) != 100) return 1;
  if (fork() == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int own = -1;
    if (keep_fd) {
      char path[64];
      snprintf(path, sizeof path, "/proc/self/fd/%d", mfd);
      own = open(path, O_RDONLY);
      if (own < 0) return 1;
    }
    for (;;) {
      ++anon->child_count;
      anon->child_saw = anon->parent_count;
      ++mem->child_count;
      mem->child_saw = mem->parent_count;
      uint64_t seen = 0;
      // Only the child writes child_count: what the memfd holds there is what it just wrote.
      if (own >= 0 && (pread(own, &seen, sizeof seen, offsetof(struct shared, child_count)) != sizeof seen ||
                       seen != mem->child_count))
        ws_failf("the child's own fd on the memfd reads %llu, its mapping holds %llu", (unsigned long long)seen,
                 (unsigned long long)mem->child_count);
      ws_sleep_ms(5);
    }
  }
  struct shared* alias = mremap((void*)anon, 0, 8192, MREMAP_MAYMOVE);
  if (alias == MAP_FAILED) return 1;
  for (;;) {
    ++anon->parent_count;
    ++mem->parent_count;
    if (alias->parent_count != anon->parent_count) ws_failf("the second mapping of the shared memory differs");
    if (anon->parent_count > 300 && anon->parent_count - anon->child_saw > 200)
      ws_failf("the child does not see the anonymous memory move (%llu vs %llu)",
               (unsigned long long)anon->parent_count, (unsigned long long)anon->child_saw);
    if (mem->parent_count > 300 && mem->parent_count - mem->child_saw > 200)
      ws_failf("the child does not see the memfd move (%llu vs %llu)", (unsigned long long)mem->parent_count,
               (unsigned long long)mem->child_saw);
    if (keep_fd) {
      uint64_t seen = 0;
      if (pread(mfd, &seen, sizeof seen, offsetof(struct shared, parent_count)) != sizeof seen || seen != mem->parent_count)
        ws_failf("the memfd's fd reads %llu, its mapping holds %llu", (unsigned long long)seen,
                 (unsigned long long)mem->parent_count);
      if (lseek(mfd, 0, SEEK_CUR) != 100) ws_failf("the memfd's offset moved to %lld", (long long)lseek(mfd, 0, SEEK_CUR));
    }
    ws_write(anon->child_count < mem->child_count ? anon->child_count : mem->child_count);
    ws_sleep_ms(10);
  }
}
