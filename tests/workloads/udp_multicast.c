// udp_multicast: a UDP socket that joined two multicast groups on loopback: 239.7.7.1 from any
// source, and 239.7.7.2 from 127.0.0.1 only (a source-specific join: include mode). A sender
// on 127.0.0.1 sends a numbered datagram to each of them, and to 239.7.7.3, which nobody
// joined, every iteration (multicast loop on). The receiver must keep getting both groups'
// datagrams (a membership lost by a restore stops them: FAIL after 5 iterations without one,
// each waiting up to 100 ms) and never the third's. Run in a network namespace of its own (a container): it turns
// multicast on for loopback. Progress: the iteration count.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "workload_status.h"

#define PORT 5077

static struct sockaddr_in group_address(const char* ip) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(PORT);
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  const int lo = (int)if_nametoindex("lo");
  int ctl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(ctl, SIOCGIFFLAGS, &ifr) < 0) ws_failf("SIOCGIFFLAGS lo: %s", strerror(errno));
  ifr.ifr_flags |= IFF_MULTICAST | IFF_UP;
  if (ioctl(ctl, SIOCSIFFLAGS, &ifr) < 0) ws_failf("SIOCSIFFLAGS lo: %s", strerror(errno));
  close(ctl);

  int r = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(r, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in any;
  memset(&any, 0, sizeof any);
  any.sin_family = AF_INET;
  any.sin_port = htons(PORT);
  if (bind(r, (struct sockaddr*)&any, sizeof any) < 0) ws_failf("bind :%d: %s", PORT, strerror(errno));
  struct ip_mreqn join;
  memset(&join, 0, sizeof join);
  inet_pton(AF_INET, "239.7.7.1", &join.imr_multiaddr);
  join.imr_ifindex = lo;
  if (setsockopt(r, IPPROTO_IP, IP_ADD_MEMBERSHIP, &join, sizeof join) < 0)
    ws_failf("IP_ADD_MEMBERSHIP 239.7.7.1: %s", strerror(errno));
  struct ip_mreq_source ssm;
  memset(&ssm, 0, sizeof ssm);
  inet_pton(AF_INET, "239.7.7.2", &ssm.imr_multiaddr);
  inet_pton(AF_INET, "127.0.0.1", &ssm.imr_interface);
  inet_pton(AF_INET, "127.0.0.1", &ssm.imr_sourceaddr);
  if (setsockopt(r, IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, &ssm, sizeof ssm) < 0)
    ws_failf("IP_ADD_SOURCE_MEMBERSHIP 239.7.7.2: %s", strerror(errno));

  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in local;
  memset(&local, 0, sizeof local);
  local.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &local.sin_addr);
  if (bind(s, (struct sockaddr*)&local, sizeof local) < 0) ws_failf("bind the sender: %s", strerror(errno));
  struct ip_mreqn out;
  memset(&out, 0, sizeof out);
  out.imr_ifindex = lo;
  if (setsockopt(s, IPPROTO_IP, IP_MULTICAST_IF, &out, sizeof out) < 0) ws_failf("IP_MULTICAST_IF: %s", strerror(errno));

  const struct sockaddr_in groups[3] = {group_address("239.7.7.1"), group_address("239.7.7.2"),
                                        group_address("239.7.7.3")};
  unsigned long long last_seen[2] = {0, 0};
  for (unsigned long long iter = 1;; ++iter) {
    for (int g = 0; g < 3 && !ws_failed(); ++g) {
      char msg[64];
      int n = snprintf(msg, sizeof msg, "%d %llu", g, iter);
      if (sendto(s, msg, (size_t)n, 0, (const struct sockaddr*)&groups[g], sizeof groups[g]) < 0)
        ws_failf("send to group %d: %s", g, strerror(errno));
    }
    struct pollfd p = {r, POLLIN, 0};
    for (int waited = 0; waited < 10 && poll(&p, 1, 10) >= 0; ++waited) {
      char buf[64];
      ssize_t n;
      while ((n = recv(r, buf, sizeof buf - 1, 0)) > 0) {
        buf[n] = 0;
        int g = -1;
        unsigned long long i = 0;
        if (sscanf(buf, "%d %llu", &g, &i) != 2 || g < 0 || g > 2) ws_failf("a datagram '%s'", buf);
        else if (g == 2) ws_failf("a datagram of 239.7.7.3, a group it never joined");
        else last_seen[g] = i;
      }
      if (last_seen[0] == iter && last_seen[1] == iter) break;
    }
    for (int g = 0; g < 2; ++g)
      if (iter > 5 && iter - last_seen[g] > 5)
        ws_failf("no datagram of 239.7.7.%d for %llu iterations: the membership is lost", g + 1, iter - last_seen[g]);
    ws_write(iter);
    ws_sleep_ms(10);
  }
}
