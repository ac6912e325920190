// guards: guard regions (MADV_GUARD_INSTALL, Linux 6.13+) inside an anonymous mapping of 16
// pages filled with a pattern: pages 4-5 and 10 are guards. Every iteration each guard page
// must fault (SIGSEGV, caught and jumped over) and every other page must hold its pattern.
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>

#include "workload_status.h"

#define PAGE 4096UL
#define GUARD_INSTALL 102  // MADV_GUARD_INSTALL

static sigjmp_buf on_fault;

static void segv(int sig) {
  (void)sig;
  siglongjmp(on_fault, 1);
}

static int faults(volatile char* p) {
  if (sigsetjmp(on_fault, 1)) return 1;
  (void)*p;
  return 0;
}

static int is_guard(size_t page) { return page == 4 || page == 5 || page == 10; }

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  char* m = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return 1;
  for (size_t i = 0; i < 16; ++i) memset(m + i * PAGE, (int)(0x20 + i), PAGE);
  if (madvise(m + 4 * PAGE, 2 * PAGE, GUARD_INSTALL) < 0 || madvise(m + 10 * PAGE, PAGE, GUARD_INSTALL) < 0) {
    fprintf(stderr, "guards: MADV_GUARD_INSTALL: %s\n", strerror(errno));
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = segv;
  sa.sa_flags = SA_NODEFER;
  sigaction(SIGSEGV, &sa, NULL);
  for (unsigned long long iter = 1;; ++iter) {
    for (size_t i = 0; i < 16; ++i) {
      volatile char* p = m + i * PAGE + 100;
      int fault = faults(p);
      if (is_guard(i) && !fault) ws_failf("page %zu is no longer a guard", i);
      if (!is_guard(i) && fault) ws_failf("page %zu faults", i);
      if (!is_guard(i) && !fault && *p != (char)(0x20 + i)) ws_failf("page %zu lost its pattern", i);
    }
    ws_write(iter);
    ws_sleep_ms(20);
  }
}
