// inet_echo: TCP and UDP sockets that check themselves across checkpoint and restore.
//   inet_echo STATUS IP PORT [inner|packet]
// Listens on IP:PORT (TCP, IPv4) and [::1]:PORT+1 (TCP, IPv6, IPV6_V6ONLY) and echoes every
// byte any client sends. UDP: IP:PORT+2 receives a numbered datagram each iteration from a
// socket bound to 127.0.0.1:PORT+4 and connected to it; [::1]:PORT+3 (v6only) sends numbered
// datagrams to itself. Each is read one iteration after it was sent, so some are always
// queued: a lost or repeated one is a FAIL. With "inner", a connection from the workload to
// its own listener carries a counter each iteration, read back (echoed) one iteration later:
// the stream must continue exactly. The options set at the start (SO_REUSEADDR, SO_KEEPALIVE
// with TCP_KEEPIDLE/INTVL/CNT, TCP_NODELAY, SO_RCVTIMEO, SO_SNDBUF, IP_TOS, O_NONBLOCK) are
// checked every iteration, with IP_PKTINFO, IPV6_RECVPKTINFO, IPV6_UNICAST_HOPS,
// TCP_NOTSENT_LOWAT and TCP_CONGESTION. A NETLINK_ROUTE socket bound to the link and IPv4 address groups
// and a NETLINK_KOBJECT_UEVENT one must keep their groups. With "packet", it also holds a
// packet socket (which a dump refuses).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>

#include "workload_status.h"

#define MAX_CLIENTS 64

static int getint(int s, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(s, level, name, &v, &len) < 0) ws_failf("getsockopt %d/%d: %s", level, name, strerror(errno));
  return v;
}

static void setint(int s, int level, int name, int v) {
  if (setsockopt(s, level, name, &v, sizeof v) < 0) ws_failf("setsockopt %d/%d: %s", level, name, strerror(errno));
}

static struct sockaddr_in v4(const char* ip, int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

static struct sockaddr_in6 v6(int port) {
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof a);
  a.sin6_family = AF_INET6;
  a.sin6_port = htons((unsigned short)port);
  a.sin6_addr = in6addr_loopback;
  return a;
}

static int must(int rc, const char* what) {
  if (rc < 0) {
    fprintf(stderr, "inet_echo: %s: %s\n", what, strerror(errno));
    exit(1);
  }
  return rc;
}

// Reads every queued datagram of s; each must carry the next number.
static void drain_numbered(int s, uint64_t* expected, const char* name) {
  for (;;) {
    uint64_t n;
    ssize_t r = recv(s, &n, sizeof n, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (r != sizeof n) {
      ws_failf("%s: recv returned %zd: %s", name, r, r < 0 ? strerror(errno) : "short");
      return;
    }
    if (n != *expected) ws_failf("%s: datagram %llu, expected %llu", name, (unsigned long long)n, (unsigned long long)*expected);
    *expected = n + 1;
  }
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 3, "STATUS IP PORT [inner]");
  const char* ip = argv[2];
  const int port = atoi(argv[3]);
  const int inner = argc > 4 && strcmp(argv[4], "inner") == 0;
  const char* loop_ip = strcmp(ip, "0.0.0.0") == 0 ? "127.0.0.1" : ip;

  int l4 = must(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), "socket");
  setint(l4, SOL_SOCKET, SO_REUSEADDR, 1);
  setint(l4, SOL_SOCKET, SO_KEEPALIVE, 1);  // accepted connections inherit it
  setint(l4, IPPROTO_TCP, TCP_KEEPIDLE, 77);
  setint(l4, IPPROTO_TCP, TCP_KEEPINTVL, 11);
  setint(l4, IPPROTO_TCP, TCP_KEEPCNT, 5);
  setint(l4, IPPROTO_IP, IP_TOS, 0x10);
  struct sockaddr_in a4 = v4(ip, port);
  must(bind(l4, (struct sockaddr*)&a4, sizeof a4), "bind tcp4");
  must(listen(l4, 77), "listen tcp4");
  int l6 = must(socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0), "socket");
  setint(l6, IPPROTO_IPV6, IPV6_V6ONLY, 1);
  setint(l6, SOL_SOCKET, SO_REUSEPORT, 1);
  setint(l6, SOL_SOCKET, SO_KEEPALIVE, 1);
  struct sockaddr_in6 a6 = v6(port + 1);
  must(bind(l6, (struct sockaddr*)&a6, sizeof a6), "bind tcp6");
  must(listen(l6, 5), "listen tcp6");

  int u4 = must(socket(AF_INET, SOCK_DGRAM, 0), "socket");
  struct sockaddr_in au4 = v4(ip, port + 2);
  must(bind(u4, (struct sockaddr*)&au4, sizeof au4), "bind udp4");
  struct timeval rcvtimeo = {1, 500000};
  must(setsockopt(u4, SOL_SOCKET, SO_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo), "SO_RCVTIMEO");
  setint(u4, SOL_SOCKET, SO_SNDBUF, 100000);
  setint(u4, IPPROTO_IP, IP_PKTINFO, 1);
  setint(l4, IPPROTO_TCP, TCP_NOTSENT_LOWAT, 12345);
  const int sndbuf = getint(u4, SOL_SOCKET, SO_SNDBUF);
  int u4c = must(socket(AF_INET, SOCK_DGRAM, 0), "socket");
  struct sockaddr_in au4c = v4("127.0.0.1", port + 4), au4to = v4(loop_ip, port + 2);
  must(bind(u4c, (struct sockaddr*)&au4c, sizeof au4c), "bind udp4 sender");
  must(connect(u4c, (struct sockaddr*)&au4to, sizeof au4to), "connect udp4");
  int u6 = must(socket(AF_INET6, SOCK_DGRAM, 0), "socket");
  setint(u6, IPPROTO_IPV6, IPV6_V6ONLY, 1);
  setint(u6, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
  setint(u6, IPPROTO_IPV6, IPV6_UNICAST_HOPS, 7);
  struct sockaddr_in6 au6 = v6(port + 3);
  must(bind(u6, (struct sockaddr*)&au6, sizeof au6), "bind udp6");

  int rt = must(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), "netlink route");
  struct sockaddr_nl nl;
  memset(&nl, 0, sizeof nl);
  nl.nl_family = AF_NETLINK;
  nl.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR;
  must(bind(rt, (struct sockaddr*)&nl, sizeof nl), "bind netlink route");
  setint(rt, SOL_NETLINK, NETLINK_NO_ENOBUFS, 1);
  setint(rt, SOL_SOCKET, SO_RCVBUF, 300000);
  const int rt_rcvbuf = getint(rt, SOL_SOCKET, SO_RCVBUF);
  const int group33 = 33;  // RTNLGRP_BRVLAN: past the 32 of nl_groups
  must(setsockopt(rt, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group33, sizeof group33), "join group 33");
  int ue = must(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT), "netlink uevent");
  nl.nl_groups = 1;
  nl.nl_pid = 0;
  if (bind(ue, (struct sockaddr*)&nl, sizeof nl) < 0) ue = -1;  // a container's namespace may not allow it
  if (argc > 4 && strcmp(argv[4], "packet") == 0) must(socket(AF_PACKET, SOCK_RAW, 0), "packet socket");

  int clients[MAX_CLIENTS];
  int nclients = 0;
  int cli = -1;
  if (inner) {
    cli = must(socket(AF_INET, SOCK_STREAM, 0), "socket");
    setint(cli, IPPROTO_TCP, TCP_NODELAY, 1);
    struct sockaddr_in to = v4(loop_ip, port);
    must(connect(cli, (struct sockaddr*)&to, sizeof to), "connect inner");
    must(fcntl(cli, F_SETFL, O_NONBLOCK), "O_NONBLOCK");
    must(setsockopt(cli, IPPROTO_TCP, TCP_CONGESTION, "reno", 4), "TCP_CONGESTION reno");
  }
  // With "inner", a second connection to itself shut down for reading: reads see the end.
  int shut = -1;
  if (inner) {
    shut = must(socket(AF_INET, SOCK_STREAM, 0), "socket");
    struct sockaddr_in to = v4(loop_ip, port);
    must(connect(shut, (struct sockaddr*)&to, sizeof to), "connect shut");
    must(shutdown(shut, SHUT_RD), "shutdown SHUT_RD");
  }
  uint64_t sent4 = 0, expect4 = 0, sent6 = 0, expect6 = 0, sent_inner = 0, expect_inner = 0;
  unsigned char partial[8];
  size_t npartial = 0;
  char buf[65536];
  for (unsigned long long it = 1;; ++it) {
    // Accept and echo.
    for (int* l = (int[]){l4, l6}, k = 0; k < 2; ++k) {
      int c = accept4(l[k], NULL, NULL, SOCK_NONBLOCK);
      if (c >= 0 && nclients < MAX_CLIENTS) clients[nclients++] = c;
      else if (c < 0 && errno != EAGAIN) ws_failf("accept: %s", strerror(errno));
    }
    for (int i = 0; i < nclients; ++i) {
      ssize_t n = read(clients[i], buf, sizeof buf);
      if (n > 0) {
        ssize_t done = 0;
        while (done < n) {
          ssize_t w = write(clients[i], buf + done, (size_t)(n - done));
          if (w < 0 && errno == EAGAIN) {
            struct pollfd p = {clients[i], POLLOUT, 0};
            poll(&p, 1, 100);
            continue;
          }
          if (w < 0) {
            ws_failf("echo: %s", strerror(errno));
            break;
          }
          done += w;
        }
      } else if (n == 0 || (n < 0 && errno != EAGAIN)) {
        if (n < 0 && errno != ECONNRESET) ws_failf("client read: %s", strerror(errno));
        close(clients[i]);
        clients[i--] = clients[--nclients];
      }
    }
    // The inner stream: what was echoed so far must be 0, 1, 2, ... in order.
    if (inner) {
      ssize_t n = read(cli, buf, sizeof buf);
      if (n == 0) ws_failf("inner connection closed");
      else if (n < 0 && errno != EAGAIN) ws_failf("inner read: %s", strerror(errno));
      for (ssize_t i = 0; i < n; ++i) {
        partial[npartial++] = (unsigned char)buf[i];
        if (npartial == 8) {
          uint64_t v;
          memcpy(&v, partial, 8);
          npartial = 0;
          if (v != expect_inner)
            ws_failf("inner stream: %llu, expected %llu", (unsigned long long)v, (unsigned long long)expect_inner);
          expect_inner = v + 1;
        }
      }
      for (int k = 0; k < 3; ++k, ++sent_inner)
        if (write(cli, &sent_inner, sizeof sent_inner) != sizeof sent_inner) ws_failf("inner write: %s", strerror(errno));
    }
    drain_numbered(u4, &expect4, "udp4");
    drain_numbered(u6, &expect6, "udp6");
    for (int k = 0; k < 3; ++k, ++sent4)
      if (send(u4c, &sent4, sizeof sent4, 0) != sizeof sent4) ws_failf("udp4 send: %s", strerror(errno));
    for (int k = 0; k < 2; ++k, ++sent6)
      if (sendto(u6, &sent6, sizeof sent6, 0, (struct sockaddr*)&au6, sizeof au6) != sizeof sent6)
        ws_failf("udp6 send: %s", strerror(errno));

    // The options.
    if (getint(l4, SOL_SOCKET, SO_ACCEPTCONN) != 1 || getint(l6, SOL_SOCKET, SO_ACCEPTCONN) != 1)
      ws_failf("a listener stopped listening");
    if (getint(l4, SOL_SOCKET, SO_REUSEADDR) != 1) ws_failf("SO_REUSEADDR lost");
    if (getint(l6, SOL_SOCKET, SO_REUSEPORT) != 1) ws_failf("SO_REUSEPORT lost");
    if (getint(l4, IPPROTO_TCP, TCP_KEEPIDLE) != 77 || getint(l4, IPPROTO_TCP, TCP_KEEPINTVL) != 11 ||
        getint(l4, IPPROTO_TCP, TCP_KEEPCNT) != 5)
      ws_failf("keepalive timing lost");
    if (getint(l4, IPPROTO_IP, IP_TOS) != 0x10) ws_failf("IP_TOS lost");
    if (getint(u4, IPPROTO_IP, IP_PKTINFO) != 1) ws_failf("IP_PKTINFO lost");
    if (getint(u6, IPPROTO_IPV6, IPV6_RECVPKTINFO) != 1) ws_failf("IPV6_RECVPKTINFO lost");
    if (getint(u6, IPPROTO_IPV6, IPV6_UNICAST_HOPS) != 7) ws_failf("IPV6_UNICAST_HOPS lost");
    if (getint(l4, IPPROTO_TCP, TCP_NOTSENT_LOWAT) != 12345) ws_failf("TCP_NOTSENT_LOWAT lost");
    if (!(fcntl(l4, F_GETFL) & O_NONBLOCK)) ws_failf("O_NONBLOCK lost");
    if (getint(l6, IPPROTO_IPV6, IPV6_V6ONLY) != 1 || getint(u6, IPPROTO_IPV6, IPV6_V6ONLY) != 1)
      ws_failf("IPV6_V6ONLY lost");
    if (getint(u4, SOL_SOCKET, SO_SNDBUF) != sndbuf) ws_failf("SO_SNDBUF %d, was %d", getint(u4, SOL_SOCKET, SO_SNDBUF), sndbuf);
    struct timeval tv = {0, 0};
    socklen_t tl = sizeof tv;
    getsockopt(u4, SOL_SOCKET, SO_RCVTIMEO, &tv, &tl);
    if (tv.tv_sec != 1 || tv.tv_usec != 500000) ws_failf("SO_RCVTIMEO lost");
    if (inner) {
      char byte;
      ssize_t r = recv(shut, &byte, 1, MSG_DONTWAIT);
      if (r != 0) ws_failf("a connection shut down for reading gave %zd (%s), not the end", r, r < 0 ? strerror(errno) : "data");
      if (getint(cli, IPPROTO_TCP, TCP_NODELAY) != 1) ws_failf("TCP_NODELAY lost");
      char cc[16] = {0};
      socklen_t ccl = sizeof cc - 1;
      if (getsockopt(cli, IPPROTO_TCP, TCP_CONGESTION, cc, &ccl) < 0 || strcmp(cc, "reno") != 0)
        ws_failf("TCP_CONGESTION %s, not reno", cc);
      if (getint(cli, SOL_SOCKET, SO_KEEPALIVE) != 0) ws_failf("SO_KEEPALIVE appeared");
      for (int i = 0; i < nclients; ++i)
        if (getint(clients[i], SOL_SOCKET, SO_KEEPALIVE) != 1) ws_failf("SO_KEEPALIVE of an accepted connection lost");
    }
    struct sockaddr_nl got;
    socklen_t gl = sizeof got;
    if (getsockname(rt, (struct sockaddr*)&got, &gl) < 0 || got.nl_groups != (RTMGRP_LINK | RTMGRP_IPV4_IFADDR))
      ws_failf("netlink route socket lost its groups");
    gl = sizeof got;
    if (ue >= 0 && (getsockname(ue, (struct sockaddr*)&got, &gl) < 0 || got.nl_groups != 1))
      ws_failf("netlink uevent socket lost its group");
    if (getint(rt, SOL_SOCKET, SO_PROTOCOL) != NETLINK_ROUTE) ws_failf("netlink protocol changed");
    unsigned int groups[4] = {0};
    socklen_t gsl = sizeof groups;
    if (getsockopt(rt, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, groups, &gsl) < 0 || !(groups[1] & 1u))
      ws_failf("netlink route socket left group 33");
    if (getint(rt, SOL_NETLINK, NETLINK_NO_ENOBUFS) != 1) ws_failf("NETLINK_NO_ENOBUFS lost");
    if (getint(rt, SOL_SOCKET, SO_RCVBUF) != rt_rcvbuf) ws_failf("netlink SO_RCVBUF lost");
    ws_write(it);
    ws_sleep_ms(20);
  }
}
