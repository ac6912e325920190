// launcher_log: a counter that also prints "line <count>" to its stdout (the container's log)
// every 10 ms, so that a test can see whether a restored job's log goes on where it was.
#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  for (unsigned long long count = 1;; ++count) {
    char line[64];
    int n = snprintf(line, sizeof line, "line %llu\n", count);
    if (write(1, line, (size_t)n) != n) ws_failf("write to stdout: %s", strerror(errno));
    ws_write(count);
    ws_sleep_ms(10);
  }
}
