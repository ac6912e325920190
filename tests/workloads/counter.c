// counter: one thread, counts once per 10 ms and writes "ok <count>" to the status file
// (argv[1]). It checks that its pid never changes and that a shadow copy of the count, kept
// in a differently encoded form, always matches the count.
#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  const pid_t pid = getpid();
  unsigned long long count = 0;
  unsigned long long shadow = ~0ULL;  // always ~count * 3
  for (;;) {
    ++count;
    shadow = ~(count * 3);
    if (getpid() != pid) ws_failf("pid changed from %d to %d", (int)pid, (int)getpid());
    if (~shadow != count * 3) ws_failf("shadow %llx does not match count %llu", shadow, count);
    ws_write(count);
    ws_sleep_ms(10);
  }
}
