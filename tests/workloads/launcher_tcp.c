// launcher_tcp: a one-shot TCP echo for the launcher's veth test.
//   launcher_tcp server IP PORT       accept one connection, answer "echo:<line>", exit 0
//   launcher_tcp client IP PORT MSG   connect (retrying up to 5 s), send MSG, print the answer
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in address(const char* ip, const char* port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)atoi(port));
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
    fprintf(stderr, "bad address %s\n", ip);
    exit(2);
  }
  return a;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: launcher_tcp server|client IP PORT [MSG]\n");
    return 2;
  }
  struct sockaddr_in a = address(argv[2], argv[3]);
  char buf[512];
  if (strcmp(argv[1], "server") == 0) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr*)&a, sizeof a) < 0 || listen(s, 1) < 0) {
      perror("bind/listen");
      return 1;
    }
    printf("listening\n");
    fflush(stdout);
    int c = accept(s, NULL, NULL);
    if (c < 0) {
      perror("accept");
      return 1;
    }
    ssize_t n = read(c, buf, sizeof buf - 1);
    if (n < 0) n = 0;
    buf[n] = 0;
    char out[600];
    int len = snprintf(out, sizeof out, "echo:%s", buf);
    if (write(c, out, (size_t)len) != len) return 1;
    close(c);
    return 0;
  }
  if (argc < 5) return 2;
  for (int attempt = 0; attempt < 100; ++attempt) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr*)&a, sizeof a) == 0) {
      if (write(s, argv[4], strlen(argv[4])) < 0) return 1;
      ssize_t n = read(s, buf, sizeof buf - 1);
      if (n < 0) n = 0;
      buf[n] = 0;
      printf("%s\n", buf);
      return 0;
    }
    close(s);
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  perror("connect");
  return 1;
}
