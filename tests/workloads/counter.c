// A single-threaded counter: increments once per 10 ms and writes "<count>\n" to the status
// file given as argv[1] (atomically, by rename). After restore the count must continue.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: counter STATUS_FILE\n");
    return 2;
  }
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
  for (unsigned long count = 0;; ++count) {
    FILE* f = fopen(tmp, "w");
    if (f) {
      fprintf(f, "%lu\n", count);
      fclose(f);
      rename(tmp, argv[1]);
    }
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}
