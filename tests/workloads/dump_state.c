// dump_state: a process with state for dump tests to find in the images: a SIGUSR1 handler
// (SA_RESTART, SIGUSR2 in its mask), SIGPIPE ignored, an alternate signal stack, an
// ITIMER_REAL timer, a pipe holding "hello pipe", fd 20 a dup of the write end, a regular file
// at offset 5, an unlinked file with known contents, /dev/zero, and a thread.
// Two more threads sit in system calls: one in read() of an empty pipe of its own (restarted
// after a restore: -ERESTARTSYS) and one in poll() with a long timeout (-ERESTART_RESTARTBLOCK:
// turned into EINTR). argv[2] is a scratch directory for its files. Progress: iterations.
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include "workload_status.h"

static volatile sig_atomic_t got_usr1;
static void on_usr1(int sig) {
  (void)sig;
  got_usr1 = 1;
}

static void* idle_thread(void* arg) {
  (void)arg;
  for (;;) ws_sleep_ms(50);
  return NULL;
}

static int blocked_pipe[2];

static void* reader_thread(void* arg) {
  (void)arg;
  char c;
  for (;;)
    if (read(blocked_pipe[0], &c, 1) == 1) ws_failf("read a byte nobody wrote");
  return NULL;
}

static void* poll_thread(void* arg) {
  (void)arg;
  for (;;) syscall(SYS_poll, NULL, 0, 1000000);
  return NULL;
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 2, "STATUS_FILE SCRATCH_DIR");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGUSR2);
  if (sigaction(SIGUSR1, &sa, NULL) < 0) return 1;
  signal(SIGPIPE, SIG_IGN);

  static char altstack[65536];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) < 0) return 1;

  struct itimerval it = {{100, 0}, {100, 0}};  // far away: never fires during a test
  if (setitimer(ITIMER_REAL, &it, NULL) < 0) return 1;

  int p[2];
  if (pipe(p) < 0) return 1;
  if (write(p[1], "hello pipe", 10) != 10) return 1;
  if (dup2(p[1], 20) < 0) return 1;

  char path[4200];
  snprintf(path, sizeof path, "%s/regular", argv[2]);
  int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (f < 0 || write(f, "0123456789", 10) != 10 || lseek(f, 5, SEEK_SET) != 5) return 1;
  if (dup2(f, 21) < 0) return 1;
  close(f);

  snprintf(path, sizeof path, "%s/deleted", argv[2]);
  int d = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (d < 0 || write(d, "gone but kept", 13) != 13 || unlink(path) < 0) return 1;
  if (dup2(d, 22) < 0) return 1;
  close(d);

  int z = open("/dev/zero", O_RDONLY);
  if (z < 0 || dup2(z, 23) < 0) return 1;
  close(z);

  // Known memory: 4 MiB of a byte pattern, and a private mapping of an 8 KiB file whose first
  // page is modified (only that page belongs in the image). Addresses go to stdout.
  unsigned char* pattern = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (pattern == MAP_FAILED) return 1;
  for (size_t i = 0; i < (4u << 20); ++i) pattern[i] = (unsigned char)(i * 7 + 3);
  snprintf(path, sizeof path, "%s/mapped", argv[2]);
  int m = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (m < 0 || ftruncate(m, 8192) < 0) return 1;
  char* mapped = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, m, 0);
  close(m);
  if (mapped == MAP_FAILED) return 1;
  mapped[0] = 'X';
  volatile char sink = mapped[4096];  // read the second page: present, but the file's
  (void)sink;
  printf("pattern %p mapped %p\n", (void*)pattern, (void*)mapped);
  fflush(stdout);

  if (pipe(blocked_pipe) < 0) return 1;
  pthread_t t;
  if (pthread_create(&t, NULL, idle_thread, NULL) != 0) return 1;
  if (pthread_create(&t, NULL, reader_thread, NULL) != 0) return 1;
  if (pthread_create(&t, NULL, poll_thread, NULL) != 0) return 1;
  for (unsigned long long i = 1;; ++i) {
    ws_write(i);
    ws_sleep_ms(10);
  }
}
