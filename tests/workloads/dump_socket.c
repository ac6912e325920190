// dump_socket: holds a TCP socket listening on 127.0.0.1 (any port), so that dump refuses it.
#include <netinet/in.h>
#include <sys/socket.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || bind(s, (struct sockaddr*)&a, sizeof a) < 0 || listen(s, 1) < 0) return 1;
  for (unsigned long long i = 1;; ++i) {
    ws_write(i);
    ws_sleep_ms(10);
  }
}
