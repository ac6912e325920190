// unix_listener: a stream socket listening on STATUS.sock (mode 0600). Every iteration the
// socket file must be there with that mode, and a connection made to the path must arrive at
// this listener (the name leads to it, not to a stale file).
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  if (snprintf(a.sun_path, sizeof a.sun_path, "%s.sock", ws_path) >= (int)sizeof a.sun_path) {
    fprintf(stderr, "unix_listener: %s.sock is too long for a socket name\n", ws_path);
    return 2;
  }
  unlink(a.sun_path);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  if (bind(l, (struct sockaddr*)&a, sizeof a) < 0 || chmod(a.sun_path, 0600) < 0 || listen(l, 4) < 0) {
    fprintf(stderr, "unix_listener: %s: %s\n", a.sun_path, strerror(errno));
    return 1;
  }
  for (unsigned long long i = 1;; ++i) {
    struct stat st;
    if (stat(a.sun_path, &st) < 0 || !S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != 0600)
      ws_failf("%s: mode %o (%s)", a.sun_path, st.st_mode, strerror(errno));
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr*)&a, sizeof a) < 0) {
      ws_failf("connect to %s: %s", a.sun_path, strerror(errno));
    } else {
      int s = accept(l, NULL, NULL);
      char x = 0;
      if (s < 0 || send(c, "!", 1, 0) != 1 || recv(s, &x, 1, 0) != 1 || x != '!')
        ws_failf("the connection to %s did not reach this listener", a.sun_path);
      if (s >= 0) close(s);
    }
    close(c);
    ws_write(i);
    ws_sleep_ms(10);
  }
}
