// vmflags: mappings whose VM flags must come back, each checked every iteration:
//   locked   8 pages, mlock'ed and filled: VmLck in /proc/self/status covers them
//   sealed   4 pages, filled, then mseal'ed: munmap and mprotect fail with EPERM, contents stay
//   nodump   4 pages with MADV_DONTDUMP: smaps shows "dd"
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "workload_status.h"

#define PAGE 4096UL

static void die(const char* what) {
  fprintf(stderr, "vmflags: %s: %s\n", what, strerror(errno));
  exit(1);
}

static long status_kb(const char* key) {
  char text[8192];
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof text - 1);
  if (fd >= 0) close(fd);
  if (n <= 0) return -1;
  text[n] = 0;
  char* p = strstr(text, key);
  return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

// The VmFlags line of the smaps entry that starts at addr.
static int smaps_has_flag(void* addr, const char* flag) {
  static char text[1 << 20];
  int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  size_t len = 0;
  ssize_t n;
  while (fd >= 0 && len < sizeof text - 1 && (n = read(fd, text + len, sizeof text - 1 - len)) > 0) len += (size_t)n;
  if (fd >= 0) close(fd);
  text[len] = 0;
  char head[32];
  snprintf(head, sizeof head, "\n%lx-", (unsigned long)addr);
  char* entry = strstr(text, head);
  if (!entry) return 0;
  char* flags = strstr(entry, "VmFlags:");
  if (!flags) return 0;
  char* end = strchr(flags, '\n');
  char want[8];
  snprintf(want, sizeof want, " %s", flag);
  char* hit = strstr(flags, want);
  return hit && (!end || hit < end);
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  char* locked = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char* sealed = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char* nodump = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (locked == MAP_FAILED || sealed == MAP_FAILED || nodump == MAP_FAILED) die("mmap");
  memset(locked, 0x4c, 8 * PAGE);
  if (mlock(locked, 8 * PAGE) < 0) die("mlock");
  memset(sealed, 0x53, 4 * PAGE);
  if (syscall(462 /* mseal */, sealed, 4 * PAGE, 0) < 0) die("mseal");
  if (madvise(nodump, 4 * PAGE, MADV_DONTDUMP) < 0) die("madvise");
  for (unsigned long long iter = 1;; ++iter) {
    long lck = status_kb("VmLck:");
    if (lck < (long)(8 * PAGE / 1024)) ws_failf("VmLck is %ld kB, expected at least %lu", lck, 8 * PAGE / 1024);
    for (size_t i = 0; i < 8 * PAGE; i += PAGE)
      if (locked[i] != 0x4c) ws_failf("locked page %zu lost its contents", i / PAGE);
    if (munmap(sealed, PAGE) == 0 || errno != EPERM) ws_failf("munmap of the sealed region did not fail with EPERM");
    if (mprotect(sealed, PAGE, PROT_READ) == 0 || errno != EPERM)
      ws_failf("mprotect of the sealed region did not fail with EPERM");
    for (size_t i = 0; i < 4 * PAGE; i += PAGE)
      if (sealed[i] != 0x53) ws_failf("sealed page %zu lost its contents", i / PAGE);
    if (!smaps_has_flag(nodump, "dd")) ws_failf("the MADV_DONTDUMP region lost its dd flag");
    if (!smaps_has_flag(locked, "lo")) ws_failf("the locked region lost its lo flag");
    if (!smaps_has_flag(sealed, "sl")) ws_failf("the sealed region lost its sl flag");
    ws_write(iter);
    ws_sleep_ms(20);
  }
}
