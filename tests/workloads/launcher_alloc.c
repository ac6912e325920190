// launcher_alloc MIB: allocates and touches MIB MiB, then prints "survived" (it should not,
// under a smaller memory limit).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  long mib = argc > 1 ? atol(argv[1]) : 256;
  for (long i = 0; i < mib; ++i) {
    char* p = malloc(1 << 20);
    if (!p) {
      printf("malloc failed at %ld MiB\n", i);
      return 1;
    }
    memset(p, 1, 1 << 20);
  }
  printf("survived\n");
  return 0;
}
