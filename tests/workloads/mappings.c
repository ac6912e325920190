// mappings: many kinds of memory mappings whose contents and layout must survive a checkpoint.
//   anon    private anonymous RW region between two PROT_NONE guard pages
//   shared  MAP_SHARED anonymous region
//   cold    MAP_SHARED anonymous region whose pages are dropped from the page tables after
//           every iteration (MADV_DONTNEED): the data lives on in the shared memory object
//           only, where a dump must still find it
//   memfd   MAP_SHARED mapping of a memfd ("stasis-map", sealed against shrinking) whose fd
//           stays open: what pread on the fd returns must equal the mapping
//   memfd2  MAP_SHARED mapping of a memfd ("stasis-map2") whose fd was closed after mmap
//   fpriv   MAP_PRIVATE mapping of a file it creates; some pages are then modified privately
//           (the file must keep its original bytes, untouched pages must still equal the file)
//   fshared MAP_SHARED mapping of another file; writes must reach the file
//   ro      anonymous region filled and then mprotect'ed read-only
//   stack   a plain (not MAP_GROWSDOWN) region, below a guard page, used as the stack of a
//           coroutine (ucontext) whose locals must come back
// Every iteration it mutates a word in each writable region (updating the expected checksum),
// re-checks every checksum, and checks that /proc/self/maps shows each region at the same
// addresses with the same protections (and the same file).
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <ucontext.h>

#include "workload_status.h"

#define PAGE 4096UL

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng(void) {  // xorshift64*
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}

// Position-dependent, additive over words: one word can be updated without a full pass.
static uint64_t mix(uint64_t index, uint64_t word) {
  uint64_t x = (word ^ (index * 0xD6E8FEB86659FD93ULL)) * 0x9E3779B97F4A7C15ULL;
  return x ^ (x >> 29);
}
static uint64_t checksum(const uint64_t* words, size_t n) {
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += mix(i, words[i]);
  return sum;
}

struct region {
  const char* name;
  char* addr;
  size_t len;
  char perms[5];     // as in /proc/self/maps, e.g. "rw-p"
  char file[4200];   // backing file, or "" for anonymous
  uint64_t expected; // checksum of the contents (0 if not checked)
};

enum { R_GUARD_LO, R_ANON, R_GUARD_HI, R_SHARED, R_COLD, R_MEMFD, R_MEMFD2, R_FPRIV, R_FSHARED, R_RO, R_STACK_GUARD, R_STACK, NREG };
static struct region regions[NREG];
static size_t fpriv_file_pages = 16;
static uint64_t fpriv_file_sum;  // checksum of the private-mapped file's bytes on disk
static char fpriv_original[16 * PAGE];  // the file's bytes, to compare untouched pages

static void die(const char* what) {
  fprintf(stderr, "mappings: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void fill_random(char* p, size_t len) {
  for (size_t i = 0; i < len / 8; ++i) ((uint64_t*)p)[i] = rng();
}

static void write_file(const char* path, const char* data, size_t len) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die(path);
  if (write(fd, data, len) != (ssize_t)len) die("write file");
  close(fd);
}

static void set_region(int i, const char* name, void* addr, size_t len, const char* perms, const char* file) {
  regions[i].name = name;
  regions[i].addr = addr;
  regions[i].len = len;
  snprintf(regions[i].perms, sizeof regions[i].perms, "%s", perms);
  snprintf(regions[i].file, sizeof regions[i].file, "%s", file ? file : "");
}

// Replaces one random word of a writable region, keeping its expected checksum current.
static void mutate(struct region* r, size_t first_page, size_t page_step) {
  size_t pages = r->len / PAGE;
  size_t page = first_page + (rng() % ((pages - first_page + page_step - 1) / page_step)) * page_step;
  size_t index = page * (PAGE / 8) + rng() % (PAGE / 8);
  uint64_t* w = (uint64_t*)r->addr + index;
  uint64_t v = rng();
  r->expected += mix(index, v) - mix(index, *w);
  *w = v;
}

// Checks that the region is covered by /proc/self/maps lines with its perms (and file).
static void check_maps(void) {
  FILE* f = fopen("/proc/self/maps", "re");
  if (!f) {
    ws_failf("open /proc/self/maps: %s", strerror(errno));
    return;
  }
  size_t covered[NREG] = {0};
  char line[4600];
  while (fgets(line, sizeof line, f)) {
    unsigned long start, end;
    char perms[8];
    unsigned long long off;
    char dev[32];
    unsigned long inode;
    int consumed = 0;
    if (sscanf(line, "%lx-%lx %7s %llx %31s %lu %n", &start, &end, perms, &off, dev, &inode, &consumed) < 6) continue;
    char* path = line + consumed;
    path[strcspn(path, "\n")] = 0;
    for (int i = 0; i < NREG; ++i) {
      struct region* r = &regions[i];
      unsigned long rs = (unsigned long)r->addr, re = rs + r->len;
      if (end <= rs || start >= re) continue;
      if (strcmp(perms, r->perms) != 0) {
        ws_failf("region %s at %lx: maps shows %s, expected %s", r->name, start, perms, r->perms);
        continue;
      }
      if (r->file[0] && strcmp(path, r->file) != 0) {
        ws_failf("region %s at %lx: maps shows file '%s', expected '%s'", r->name, start, path, r->file);
        continue;
      }
      unsigned long s = start > rs ? start : rs, e = end < re ? end : re;
      covered[i] += e - s;
    }
  }
  fclose(f);
  for (int i = 0; i < NREG; ++i)
    if (covered[i] != regions[i].len)
      ws_failf("region %s at %p: maps covers %zu of %zu bytes", regions[i].name, (void*)regions[i].addr, covered[i],
               regions[i].len);
}

// The coroutine runs on the R_STACK region; its locals live there.
static ucontext_t main_ctx, coro_ctx;
static unsigned long long coro_seen;
static void coroutine(void) {
  unsigned long long n = 0;
  volatile uint64_t canary = 0x5A5A5A5A12345678ULL;
  for (;;) {
    ++n;
    char* here = (char*)&n;
    struct region* s = &regions[R_STACK];
    if (here < s->addr || here >= s->addr + s->len) ws_failf("coroutine local %p is off its stack", (void*)here);
    if (canary != 0x5A5A5A5A12345678ULL) ws_failf("coroutine stack canary changed: %llx", (unsigned long long)canary);
    coro_seen = n;
    swapcontext(&coro_ctx, &main_ctx);
  }
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  char fpriv_path[4200], fshared_path[4200];
  snprintf(fpriv_path, sizeof fpriv_path, "%s.map-private", ws_path);
  snprintf(fshared_path, sizeof fshared_path, "%s.map-shared", ws_path);

  // anon between guards: reserve PROT_NONE, open up the middle.
  const size_t anon_pages = 64;
  char* res = mmap(NULL, (anon_pages + 2) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (res == MAP_FAILED) die("mmap reserve");
  if (mprotect(res + PAGE, anon_pages * PAGE, PROT_READ | PROT_WRITE) < 0) die("mprotect anon");
  set_region(R_GUARD_LO, "guard-low", res, PAGE, "---p", NULL);
  set_region(R_ANON, "anon", res + PAGE, anon_pages * PAGE, "rw-p", NULL);
  set_region(R_GUARD_HI, "guard-high", res + (anon_pages + 1) * PAGE, PAGE, "---p", NULL);
  fill_random(regions[R_ANON].addr, regions[R_ANON].len);

  char* sh = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) die("mmap shared");
  set_region(R_SHARED, "shared-anon", sh, 16 * PAGE, "rw-s", NULL);
  fill_random(sh, 16 * PAGE);

  char* cold = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (cold == MAP_FAILED) die("mmap cold");
  set_region(R_COLD, "shared-cold", cold, 16 * PAGE, "rw-s", NULL);
  fill_random(cold, 16 * PAGE);
  if (madvise(cold, 16 * PAGE, MADV_DONTNEED) < 0) die("madvise cold");

  int memfd = memfd_create("stasis-map", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (memfd < 0 || ftruncate(memfd, 8 * PAGE) < 0 || fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) die("memfd");
  char* mf = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (mf == MAP_FAILED) die("mmap memfd");
  set_region(R_MEMFD, "memfd", mf, 8 * PAGE, "rw-s", "/memfd:stasis-map (deleted)");
  fill_random(mf, 8 * PAGE);
  int memfd2 = memfd_create("stasis-map2", MFD_CLOEXEC);
  if (memfd2 < 0 || ftruncate(memfd2, 4 * PAGE) < 0) die("memfd2");
  char* mf2 = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd2, 0);
  if (mf2 == MAP_FAILED) die("mmap memfd2");
  close(memfd2);
  set_region(R_MEMFD2, "memfd-without-fd", mf2, 4 * PAGE, "rw-s", "/memfd:stasis-map2 (deleted)");
  fill_random(mf2, 4 * PAGE);

  fill_random(fpriv_original, sizeof fpriv_original);
  write_file(fpriv_path, fpriv_original, sizeof fpriv_original);
  fpriv_file_sum = checksum((uint64_t*)fpriv_original, sizeof fpriv_original / 8);
  int fd = open(fpriv_path, O_RDWR | O_CLOEXEC);
  if (fd < 0) die("open private file");
  char* fp = mmap(NULL, fpriv_file_pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (fp == MAP_FAILED) die("mmap private file");
  close(fd);
  set_region(R_FPRIV, "file-private", fp, fpriv_file_pages * PAGE, "rw-p", fpriv_path);

  {
    char init[16 * PAGE];
    fill_random(init, sizeof init);
    write_file(fshared_path, init, sizeof init);
  }
  fd = open(fshared_path, O_RDWR | O_CLOEXEC);
  if (fd < 0) die("open shared file");
  char* fs = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (fs == MAP_FAILED) die("mmap shared file");
  int fshared_fd = fd;  // kept open to compare the file with the mapping
  set_region(R_FSHARED, "file-shared", fs, 16 * PAGE, "rw-s", fshared_path);

  char* ro = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ro == MAP_FAILED) die("mmap ro");
  fill_random(ro, 8 * PAGE);
  if (mprotect(ro, 8 * PAGE, PROT_READ) < 0) die("mprotect ro");
  set_region(R_RO, "read-only", ro, 8 * PAGE, "r--p", NULL);

  const size_t stack_pages = 16;
  char* st = mmap(NULL, (stack_pages + 1) * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (st == MAP_FAILED) die("mmap stack");
  if (mprotect(st, PAGE, PROT_NONE) < 0) die("mprotect stack guard");
  set_region(R_STACK_GUARD, "stack-guard", st, PAGE, "---p", NULL);
  set_region(R_STACK, "stack", st + PAGE, stack_pages * PAGE, "rw-p", NULL);

  for (int i = 0; i < NREG; ++i)
    if (i != R_STACK && regions[i].perms[0] == 'r')
      regions[i].expected = checksum((uint64_t*)regions[i].addr, regions[i].len / 8);

  getcontext(&coro_ctx);
  coro_ctx.uc_stack.ss_sp = regions[R_STACK].addr;
  coro_ctx.uc_stack.ss_size = regions[R_STACK].len;
  coro_ctx.uc_link = NULL;
  makecontext(&coro_ctx, coroutine, 0);

  static char file_copy[16 * PAGE];
  for (unsigned long long iter = 1;; ++iter) {
    mutate(&regions[R_ANON], 0, 1);
    mutate(&regions[R_SHARED], 0, 1);
    mutate(&regions[R_COLD], 1, 3);
    mutate(&regions[R_MEMFD], 0, 1);
    mutate(&regions[R_MEMFD2], 0, 1);
    mutate(&regions[R_FPRIV], 1, 4);  // pages 1, 5, 9, 13 become private copies
    mutate(&regions[R_FSHARED], 0, 1);
    for (int i = 0; i < NREG; ++i) {
      struct region* r = &regions[i];
      if (i == R_STACK || r->perms[0] != 'r') continue;
      uint64_t got = checksum((uint64_t*)r->addr, r->len / 8);
      if (got != r->expected) ws_failf("region %s: checksum %016llx, expected %016llx", r->name,
                                       (unsigned long long)got, (unsigned long long)r->expected);
    }
    // The private file mapping: the file is untouched, unmodified pages still match it.
    if (pread(fshared_fd, file_copy, sizeof file_copy, 0) != (ssize_t)sizeof file_copy) {
      ws_failf("pread shared file: %s", strerror(errno));
    } else if (memcmp(file_copy, fs, sizeof file_copy) != 0) {
      ws_failf("file-shared: the file's bytes differ from the shared mapping");
    }
    int pfd = open(fpriv_path, O_RDONLY | O_CLOEXEC);
    if (pfd < 0 || pread(pfd, file_copy, sizeof file_copy, 0) != (ssize_t)sizeof file_copy) {
      ws_failf("read private-mapped file: %s", strerror(errno));
    } else if (checksum((uint64_t*)file_copy, sizeof file_copy / 8) != fpriv_file_sum) {
      ws_failf("file-private: private writes reached the file");
    } else {
      for (size_t p = 0; p < fpriv_file_pages; ++p)
        if (p % 4 != 1 && memcmp(fp + p * PAGE, fpriv_original + p * PAGE, PAGE) != 0)
          ws_failf("file-private: untouched page %zu differs from the file", p);
    }
    if (pfd >= 0) close(pfd);
    swapcontext(&main_ctx, &coro_ctx);
    if (coro_seen != iter) ws_failf("coroutine counted %llu, expected %llu", coro_seen, iter);
    check_maps();
    if (madvise(cold, 16 * PAGE, MADV_DONTNEED) < 0) ws_failf("madvise cold: %s", strerror(errno));
    // The memfd's fd and its mapping are one object.
    static char memfd_copy[8 * PAGE];
    if (pread(memfd, memfd_copy, sizeof memfd_copy, 0) != (ssize_t)sizeof memfd_copy)
      ws_failf("pread memfd: %s", strerror(errno));
    else if (memcmp(memfd_copy, mf, sizeof memfd_copy) != 0)
      ws_failf("memfd: the fd and the mapping differ");
    if (fcntl(memfd, F_GET_SEALS) != F_SEAL_SHRINK) ws_failf("memfd seals are %#x", fcntl(memfd, F_GET_SEALS));
    ws_write(iter);
    ws_sleep_ms(20);
  }
}
