// dump_socket: holds a packet socket (AF_PACKET, protocol 0: it receives nothing) at fd 3, a
// kind of socket no dump supports, so that dump refuses it.
#include <sys/socket.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  int s = socket(AF_PACKET, SOCK_DGRAM, 0);
  if (s < 0) return 1;
  for (unsigned long long i = 1;; ++i) {
    ws_write(i);
    ws_sleep_ms(10);
  }
}
