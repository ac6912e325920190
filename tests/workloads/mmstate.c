// mmstate: per-mapping advice and address-space-wide settings that must come back, checked
// every iteration:
//   one 4-page mapping per madvise advice that smaps shows in VmFlags: MADV_DONTFORK "dc",
//     MADV_DONTDUMP "dd", MADV_WIPEONFORK "wf", MADV_HUGEPAGE "hg", MADV_NOHUGEPAGE "nh",
//     MADV_MERGEABLE "mg" (when the kernel has KSM), MADV_RANDOM "rr", MADV_SEQUENTIAL "sr"; and
//     one mapping with none: each is still one mapping of 4 pages, with its flag and none of
//     the others'
//   mlockall(MCL_FUTURE): a page mapped now is locked ("lo"), and not on fault only ("lf")
//   prctl(PR_SET_THP_DISABLE): PR_GET_THP_DISABLE still says 1
//   membarrier: registered for private expedited, sync-core and rseq barriers (those this
//     kernel offers), each barrier succeeds (EPERM when the registration is lost)
#define _GNU_SOURCE
#include <linux/membarrier.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "workload_status.h"

#define PAGE 4096UL
#define REGION (4 * PAGE)

struct advised {
  int advice;
  const char* flag;  // "" for the plain mapping
  char* addr;
};

static struct advised regions[] = {
    {MADV_DONTFORK, "dc", NULL},   {MADV_DONTDUMP, "dd", NULL}, {MADV_WIPEONFORK, "wf", NULL},
    {MADV_HUGEPAGE, "hg", NULL},   {MADV_NOHUGEPAGE, "nh", NULL}, {MADV_MERGEABLE, "mg", NULL},
    {MADV_RANDOM, "rr", NULL},     {MADV_SEQUENTIAL, "sr", NULL}, {-1, "", NULL},
};
#define NREGIONS (sizeof regions / sizeof regions[0])

static char smaps[1 << 20];

static void die(const char* what) {
  fprintf(stderr, "mmstate: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void read_smaps(void) {
  int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  size_t len = 0;
  ssize_t n;
  while (fd >= 0 && len < sizeof smaps - 1 && (n = read(fd, smaps + len, sizeof smaps - 1 - len)) > 0) len += (size_t)n;
  if (fd >= 0) close(fd);
  smaps[len] = 0;
}

// The VmFlags of the smaps entry starting at addr (into flags, with a leading and trailing
// space), and its end; -1 when there is none.
static int vm_flags(void* addr, char* flags, size_t size, unsigned long* end) {
  char head[32];
  snprintf(head, sizeof head, "\n%lx-", (unsigned long)addr);
  char* entry = strstr(smaps, head);
  if (!entry) return -1;
  *end = strtoul(entry + strlen(head), NULL, 16);
  char* line = strstr(entry, "VmFlags:");
  if (!line) return -1;
  line += strlen("VmFlags:");
  char* eol = strchr(line, '\n');
  size_t n = eol ? (size_t)(eol - line) : strlen(line);
  if (n + 2 > size) n = size - 2;
  memcpy(flags, line, n);
  flags[n] = ' ';
  flags[n + 1] = 0;
  return 0;
}

static int has_flag(const char* flags, const char* flag) {
  char want[8];
  snprintf(want, sizeof want, " %s ", flag);
  return strstr(flags, want) != NULL;
}

static long barrier(int cmd) { return syscall(SYS_membarrier, cmd, 0, 0); }

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  for (size_t i = 0; i < NREGIONS; ++i) {
    // One guard page each side keeps the kernel from merging neighbours with equal flags.
    char* area = mmap(NULL, REGION + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) die("mmap");
    char* r = mmap(area + PAGE, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (r == MAP_FAILED) die("mmap fixed");
    memset(r, (int)(0x40 + i), REGION);
    if (regions[i].advice >= 0 && madvise(r, REGION, regions[i].advice) < 0) {
      if (regions[i].advice != MADV_MERGEABLE || errno != EINVAL) die(regions[i].flag);
      regions[i].flag = NULL;  // no KSM in this kernel
    }
    regions[i].addr = r;
  }
  if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) < 0) die("PR_SET_THP_DISABLE");
  if (mlockall(MCL_FUTURE) < 0) die("mlockall");
  const long supported = barrier(MEMBARRIER_CMD_QUERY);
  if (supported < 0) die("membarrier query");
  const int commands[3] = {MEMBARRIER_CMD_PRIVATE_EXPEDITED, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE,
                           MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ};
  const int registrations[3] = {MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
                                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ};
  int registered[3] = {0, 0, 0};
  for (int k = 0; k < 3; ++k) {
    if (!(supported & registrations[k])) continue;
    if (barrier(registrations[k]) < 0) die("membarrier register");
    registered[k] = 1;
  }

  for (unsigned long long iter = 1;; ++iter) {
    // A page mapped now (before smaps is read) must be locked by MCL_FUTURE.
    char* fresh = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fresh == MAP_FAILED) ws_failf("mmap: %s", strerror(errno));
    read_smaps();
    char flags[256];
    unsigned long end = 0;
    for (size_t i = 0; i < NREGIONS; ++i) {
      if (!regions[i].flag) continue;
      if (vm_flags(regions[i].addr, flags, sizeof flags, &end) < 0) {
        ws_failf("no mapping starts at %p (%s) any more", (void*)regions[i].addr, regions[i].flag);
        continue;
      }
      if (end != (unsigned long)regions[i].addr + REGION)
        ws_failf("the %s mapping at %p ends at %#lx, not %#lx", regions[i].flag, (void*)regions[i].addr, end,
                 (unsigned long)regions[i].addr + REGION);
      if (regions[i].flag[0] && !has_flag(flags, regions[i].flag))
        ws_failf("the mapping at %p lost its %s flag (VmFlags:%s)", (void*)regions[i].addr, regions[i].flag, flags);
      for (size_t j = 0; j < NREGIONS; ++j)
        if (j != i && regions[j].flag && regions[j].flag[0] && has_flag(flags, regions[j].flag))
          ws_failf("the %s mapping at %p has %s too (VmFlags:%s)", regions[i].flag[0] ? regions[i].flag : "plain",
                   (void*)regions[i].addr, regions[j].flag, flags);
      if (regions[i].addr[0] != (char)(0x40 + i) || regions[i].addr[REGION - 1] != (char)(0x40 + i))
        ws_failf("the %s mapping lost its contents", regions[i].flag);
    }
    if (fresh != MAP_FAILED) {
      if (vm_flags(fresh, flags, sizeof flags, &end) < 0) ws_failf("the page just mapped is not in smaps");
      else if (!has_flag(flags, "lo") || has_flag(flags, "lf"))
        ws_failf("a page mapped now is not locked as mlockall(MCL_FUTURE) asks (VmFlags:%s)", flags);
      munmap(fresh, PAGE);
    }
    int thp = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
    if (thp != 1) ws_failf("PR_GET_THP_DISABLE says %d, expected 1", thp);
    for (int k = 0; k < 3; ++k)
      if (registered[k] && barrier(commands[k]) < 0)
        ws_failf("membarrier command %#x: %s (registration lost?)", commands[k], strerror(errno));
    ws_write(iter);
    ws_sleep_ms(20);
  }
}
