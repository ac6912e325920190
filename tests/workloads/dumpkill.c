// dumpkill: a job that notices any harm a dumper killed half way could do to it. argv[2] MiB of
// pseudo-random memory whose checksum a thread re-checks, and four threads each with its own
// signal mask, checked every round:
//  - spinner: runs user code holding known values in 14 general registers and checks them;
//  - sleeper: nanosleep (a restart-block call: it must never return EINTR, no handler here);
//  - reader: blocking reads of a sequence the main thread writes into a pipe (a restartable
//    call: every number must arrive once, in order);
//  - hasher: re-hashes the memory.
// Progress is the main thread's round count.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>

#include "workload_status.h"

static char thread_fail[256];
static int thread_failed;  // set once, with __atomic

__attribute__((format(printf, 1, 2))) static void thread_failf(const char* fmt, ...) {
  int expected = 0;
  if (!__atomic_compare_exchange_n(&thread_failed, &expected, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(thread_fail, sizeof thread_fail, fmt, ap);
  va_end(ap);
  __atomic_store_n(&thread_failed, 2, __ATOMIC_RELEASE);
}

// Each thread blocks SIGUSR1 plus SIGRTMIN+k; checks that its mask is exactly that.
static void set_mask(int k) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGRTMIN + k);
  pthread_sigmask(SIG_SETMASK, &set, NULL);
}
static void check_mask(const char* who, int k) {
  sigset_t cur;
  pthread_sigmask(SIG_BLOCK, NULL, &cur);
  for (int sig = 1; sig < 65; ++sig) {
    if (sig == 32 || sig == 33) continue;  // glibc's own
    int want = sig == SIGUSR1 || sig == SIGRTMIN + k;
    if (sigismember(&cur, sig) != want) {
      thread_failf("%s: signal %d is %sblocked", who, sig, want ? "not " : "");
      return;
    }
  }
}

// Holds 0x10000001.. in rax, rbx, rcx, rdx, rsi, rbp, r8-r15 for rdi rounds; 0 when they held.
long spin_check(long rounds);
__asm__(
    ".text\n"
    ".globl spin_check\n"
    ".type spin_check, @function\n"
    "spin_check:\n"
    "  push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
    "  mov $0x10000001, %rax\n mov $0x10000002, %rbx\n mov $0x10000003, %rcx\n mov $0x10000004, %rdx\n"
    "  mov $0x10000005, %rsi\n mov $0x10000006, %rbp\n mov $0x10000008, %r8\n mov $0x10000009, %r9\n"
    "  mov $0x1000000a, %r10\n mov $0x1000000b, %r11\n mov $0x1000000c, %r12\n mov $0x1000000d, %r13\n"
    "  mov $0x1000000e, %r14\n mov $0x1000000f, %r15\n"
    "1:\n"
    "  cmp $0x10000001, %rax\n jne 2f\n cmp $0x10000002, %rbx\n jne 2f\n cmp $0x10000003, %rcx\n jne 2f\n"
    "  cmp $0x10000004, %rdx\n jne 2f\n cmp $0x10000005, %rsi\n jne 2f\n cmp $0x10000006, %rbp\n jne 2f\n"
    "  cmp $0x10000008, %r8\n jne 2f\n cmp $0x10000009, %r9\n jne 2f\n cmp $0x1000000a, %r10\n jne 2f\n"
    "  cmp $0x1000000b, %r11\n jne 2f\n cmp $0x1000000c, %r12\n jne 2f\n cmp $0x1000000d, %r13\n jne 2f\n"
    "  cmp $0x1000000e, %r14\n jne 2f\n cmp $0x1000000f, %r15\n jne 2f\n"
    "  dec %rdi\n jnz 1b\n"
    "  xor %eax, %eax\n jmp 3f\n"
    "2:\n mov $1, %eax\n"
    "3:\n pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n ret\n"
    ".size spin_check, .-spin_check\n");

static void* spinner(void* arg) {
  (void)arg;
  set_mask(1);
  for (;;) {
    if (spin_check(300000)) thread_failf("spinner: a general register changed under it");
    check_mask("spinner", 1);
    ws_sleep_ms(1);
  }
  return NULL;
}

static void* sleeper(void* arg) {
  (void)arg;
  set_mask(2);
  for (;;) {
    struct timespec ts = {0, 3 * 1000000L};
    if (nanosleep(&ts, NULL) != 0) thread_failf("sleeper: nanosleep: %s", strerror(errno));
    check_mask("sleeper", 2);
  }
  return NULL;
}

static int pipe_fds[2];
static void* reader(void* arg) {
  (void)arg;
  set_mask(3);
  for (uint64_t want = 0;; ++want) {
    uint64_t got = 0;
    ssize_t n = read(pipe_fds[0], &got, sizeof got);
    if (n != (ssize_t)sizeof got) thread_failf("reader: read returned %zd (%s)", n, n < 0 ? strerror(errno) : "short");
    else if (got != want) thread_failf("reader: got %llu, expected %llu", (unsigned long long)got, (unsigned long long)want);
    check_mask("reader", 3);
  }
  return NULL;
}

static uint64_t* mem;
static size_t words;
static uint64_t expected_hash;

static uint64_t hash_all(void) {
  uint64_t a = 0, b = 0;
  for (size_t i = 0; i + 2 <= words; i += 2) {
    a += (mem[i] ^ (i * 0xD6E8FEB86659FD93ULL)) * 0x9E3779B97F4A7C15ULL;
    b += (mem[i + 1] ^ ((i + 1) * 0xD6E8FEB86659FD93ULL)) * 0x9E3779B97F4A7C15ULL;
  }
  return a ^ (b << 1);
}

static void* hasher(void* arg) {
  (void)arg;
  set_mask(4);
  for (;;) {
    uint64_t h = hash_all();
    if (h != expected_hash)
      thread_failf("hasher: memory hash %016llx, expected %016llx", (unsigned long long)h,
                   (unsigned long long)expected_hash);
    check_mask("hasher", 4);
    ws_sleep_ms(50);
  }
  return NULL;
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 2, "STATUS_FILE MIB");
  unsigned long long mib = strtoull(argv[2], NULL, 10);
  if (mib == 0 || mib > 65536) {
    fprintf(stderr, "dumpkill: MIB must be 1 to 65536, got '%s'\n", argv[2]);
    return 2;
  }
  words = (size_t)(mib << 20) / 8;
  mem = mmap(NULL, words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    fprintf(stderr, "dumpkill: mmap: %s\n", strerror(errno));
    return 1;
  }
  uint64_t x = 0x243F6A8885A308D3ULL ^ mib;
  for (size_t i = 0; i < words; ++i) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    mem[i] = x * 0x2545F4914F6CDD1DULL;
  }
  expected_hash = hash_all();
  if (pipe(pipe_fds) < 0) {
    fprintf(stderr, "dumpkill: pipe: %s\n", strerror(errno));
    return 1;
  }
  set_mask(0);  // inherited by the threads, which set their own
  void* (*bodies[])(void*) = {spinner, sleeper, reader, hasher};
  for (int i = 0; i < 4; ++i) {
    pthread_t t;
    if (pthread_create(&t, NULL, bodies[i], NULL) != 0) {
      fprintf(stderr, "dumpkill: pthread_create failed\n");
      return 1;
    }
  }
  for (uint64_t round = 1;; ++round) {
    check_mask("main", 0);
    uint64_t seq = round - 1;
    if (write(pipe_fds[1], &seq, sizeof seq) != (ssize_t)sizeof seq) thread_failf("main: write: %s", strerror(errno));
    if (__atomic_load_n(&thread_failed, __ATOMIC_ACQUIRE) == 2) ws_failf("%s", thread_fail);
    ws_write(round);
    ws_sleep_ms(5);
  }
}
