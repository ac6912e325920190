// unix_names: unix sockets with names, listeners and connections, whose state must survive a
// checkpoint. The process works in the folder of its status file.
//   listener  SOCK_STREAM bound to the relative name STATUS-NAME.lsock (mode 0640, owner
//             1234:5678), backlog 5; one connection accepted (c1/s1) with 500 and 300 bytes
//             queued, 50 exchanged each way per iteration; two connections accepted by the
//             kernel only: c2, which sent "pending-2: hello", and c3, which sent nothing
//   seqpacket SOCK_SEQPACKET listener on an abstract name, one accepted connection with three
//             records queued each way
//   dgram     a SOCK_DGRAM socket R bound to DIR/sux-HASH.dgram (DIR: the status file's); S, unbound, connected to it;
//             T bound to an abstract name, not connected; R's queue holds four datagrams,
//             alternately from S and from T: each is received with its sender's address and
//             replaced by the next
//   unbound   a stream socket never bound nor connected
// Every iteration checks the names (getsockname, getpeername), the socket file's mode and
// owner, SO_ACCEPTCONN. When STATUS.accept exists, the pending connections are taken: the
// listener takes exactly backlog + 1 - 2 more connections (nonblocking connects until
// EAGAIN), then accept() must give c2 (with its data), c3, then the new ones; the result is
// written to STATUS.accepted ("ok" or "FAIL reason").
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "workload_status.h"

static unsigned char seq_byte(int stream, uint64_t i) { return (unsigned char)((i * 2654435761u + stream * 77) >> 11); }

static void die(const char* what) {
  fprintf(stderr, "unix_names: %s: %s\n", what, strerror(errno));
  exit(1);
}

static socklen_t make_addr(struct sockaddr_un* a, const char* name, size_t len) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  memcpy(a->sun_path, name, len);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

static int sock(int type) {
  int s = socket(AF_UNIX, type, 0);
  if (s < 0) die("socket");
  return s;
}

static void check_name(int fd, int peer, const char* name, size_t len, const char* what) {
  struct sockaddr_un a;
  socklen_t alen = sizeof a;
  int rc = peer ? getpeername(fd, (struct sockaddr*)&a, &alen) : getsockname(fd, (struct sockaddr*)&a, &alen);
  if (rc < 0) {
    ws_failf("%s: get%sname: %s", what, peer ? "peer" : "sock", strerror(errno));
    return;
  }
  size_t got = alen - offsetof(struct sockaddr_un, sun_path);
  if (len > 0 && name[0] != 0) got = strnlen(a.sun_path, got);  // a path may count its NUL
  if (got != len || memcmp(a.sun_path, name, len) != 0)
    ws_failf("%s: %s name is %.*s (%zu bytes), not %.*s", what, peer ? "peer" : "own", (int)got,
             a.sun_path[0] ? a.sun_path : a.sun_path + 1, got, (int)len, name[0] ? name : name + 1);
}

struct flow {
  int from, to, id;
  uint64_t sent, got;
};

static void flow_send(struct flow* f, size_t n) {
  unsigned char buf[512];
  for (size_t k = 0; k < n; ++k) buf[k] = seq_byte(f->id, f->sent + k);
  if (send(f->from, buf, n, MSG_NOSIGNAL) != (ssize_t)n) ws_failf("flow %d: send: %s", f->id, strerror(errno));
  else f->sent += n;
}

static void flow_check(struct flow* f, size_t n) {
  unsigned char buf[512];
  size_t have = 0;
  while (have < n) {
    ssize_t r = recv(f->to, buf + have, n - have, MSG_DONTWAIT);
    if (r <= 0) {
      ws_failf("flow %d: recv after %llu: %zd (%s)", f->id, (unsigned long long)f->got, r, strerror(errno));
      return;
    }
    have += (size_t)r;
  }
  for (size_t k = 0; k < n; ++k)
    if (buf[k] != seq_byte(f->id, f->got + k)) {
      ws_failf("flow %d: byte %llu differs", f->id, (unsigned long long)(f->got + k));
      return;
    }
  f->got += n;
}

static size_t rec_len(uint64_t i) { return 8 + (i * 53) % 300; }

static void rec_send(int fd, uint64_t* sent, int id, const struct sockaddr_un* to, socklen_t tolen) {
  unsigned char buf[512];
  size_t len = rec_len(*sent);
  memcpy(buf, sent, sizeof *sent);
  for (size_t k = sizeof *sent; k < len; ++k) buf[k] = seq_byte(id, *sent + k);
  ssize_t w = to ? sendto(fd, buf, len, MSG_NOSIGNAL, (const struct sockaddr*)to, tolen) : send(fd, buf, len, MSG_NOSIGNAL);
  if (w != (ssize_t)len) ws_failf("records %d: send: %s", id, strerror(errno));
  else (*sent)++;
}

// Receives the next record; *from gets the sender's name length (0: unbound), when asked.
static void rec_check(int fd, uint64_t* got, int id, struct sockaddr_un* from, socklen_t* fromlen) {
  unsigned char buf[512];
  ssize_t r = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr*)from, fromlen);
  uint64_t n = 0;
  if (r >= (ssize_t)sizeof n) memcpy(&n, buf, sizeof n);
  if (r != (ssize_t)rec_len(*got) || n != *got) {
    ws_failf("records %d: record %llu: %zd bytes (%s), number %llu", id, (unsigned long long)*got, r,
             r < 0 ? strerror(errno) : "", (unsigned long long)n);
    return;
  }
  for (size_t k = sizeof n; k < (size_t)r; ++k)
    if (buf[k] != seq_byte(id, n + k)) {
      ws_failf("records %d: record %llu differs", id, (unsigned long long)n);
      return;
    }
  (*got)++;
}

static void take_pending(int listener, int c2, int c3, const struct sockaddr_un* laddr, socklen_t llen) {
  char marker[4300];
  snprintf(marker, sizeof marker, "%s.accepted", ws_path);
  char result[300] = "ok";
  int extra[16], n_extra = 0;
  while (n_extra < 16) {
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (connect(c, (const struct sockaddr*)laddr, llen) < 0) {
      if (errno != EAGAIN) snprintf(result, sizeof result, "FAIL connect: %s", strerror(errno));
      close(c);
      break;
    }
    extra[n_extra++] = c;
  }
  if (strcmp(result, "ok") == 0 && n_extra != 4)
    snprintf(result, sizeof result, "FAIL the listener took %d more connections, not 4 (backlog 5, 2 pending)", n_extra);
  fcntl(listener, F_SETFL, O_NONBLOCK);  // a missing connection must fail, not block
  int expect[18];
  int n = 0;
  expect[n++] = c2;
  expect[n++] = c3;
  for (int k = 0; k < n_extra; ++k) expect[n++] = extra[k];
  for (int k = 0; k < n && strcmp(result, "ok") == 0; ++k) {
    int a = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
    if (a < 0) {
      snprintf(result, sizeof result, "FAIL accept %d: %s", k, strerror(errno));
      break;
    }
    char buf[64] = {0};
    ssize_t r = recv(a, buf, sizeof buf, 0);
    if (k == 0 && (r != 16 || memcmp(buf, "pending-2: hello", 16) != 0))
      snprintf(result, sizeof result, "FAIL the first pending connection gave %zd bytes '%.*s'", r, r > 0 ? (int)r : 0, buf);
    if (k > 0 && (r != -1 || errno != EAGAIN))
      snprintf(result, sizeof result, "FAIL pending connection %d has %zd bytes", k, r);
    struct ucred cred = {0, 0, 0};
    socklen_t clen = sizeof cred;
    if (getsockopt(a, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 || cred.pid != getpid() || cred.uid != geteuid() ||
        cred.gid != getegid())
      snprintf(result, sizeof result, "FAIL accepted connection %d: SO_PEERCRED %d %u:%u", k, cred.pid, cred.uid,
               cred.gid);
    // Which client is it? A byte sent from here must reach the one expected.
    if (send(a, "?", 1, MSG_NOSIGNAL) != 1 || recv(expect[k], buf, 1, MSG_DONTWAIT) != 1)
      snprintf(result, sizeof result, "FAIL accepted connection %d is not the one queued %d-th", k, k);
    close(a);
  }
  if (strcmp(result, "ok") == 0 && accept4(listener, NULL, NULL, SOCK_NONBLOCK) >= 0)
    snprintf(result, sizeof result, "FAIL more connections were queued than made");
  for (int k = 0; k < n_extra; ++k) close(extra[k]);
  ws_tell(marker, result);
  if (strncmp(result, "FAIL", 4) == 0) ws_failf("%s", result + 5);
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  char dir[4096], base[4096];
  snprintf(dir, sizeof dir, "%s", ws_path);
  char* slash = strrchr(dir, '/');
  snprintf(base, sizeof base, "%s", slash + 1);
  *slash = 0;
  if (chdir(dir[0] ? dir : "/") < 0) die("chdir");
  uint32_t hash = 2166136261u;
  for (const char* p = ws_path; *p; ++p) hash = (hash ^ (unsigned char)*p) * 16777619u;

  char lname[200], dname[128], tname[64], qname[64];
  snprintf(lname, sizeof lname, "%.60s.lsock", base);
  // Absolute, next to the status file when that is short enough for sun_path.
  if (strlen(dir) < 80) snprintf(dname, sizeof dname, "%.80s/sux-%08x.dgram", dir, hash);
  else snprintf(dname, sizeof dname, "/tmp/sux-%08x.dgram", hash);
  size_t tlen = (size_t)snprintf(tname, sizeof tname, "%csux-%08x-t", 0, hash);
  size_t qlen = (size_t)snprintf(qname, sizeof qname, "%csux-%08x-seq", 0, hash);
  size_t llen_name = strlen(lname), dlen = strlen(dname);
  struct sockaddr_un laddr, daddr, taddr, qaddr;
  socklen_t llen = make_addr(&laddr, lname, llen_name + 1), dalen = make_addr(&daddr, dname, dlen + 1);
  socklen_t talen = make_addr(&taddr, tname, tlen), qalen = make_addr(&qaddr, qname, qlen);

  unlink(lname);
  int L = sock(SOCK_STREAM);
  if (bind(L, (struct sockaddr*)&laddr, llen) < 0) die("bind listener");
  if (chmod(lname, 0640) < 0 || chown(lname, 1234, 5678) < 0) die("chmod/chown the socket file");
  if (listen(L, 5) < 0) die("listen");
  int c1 = sock(SOCK_STREAM);
  if (connect(c1, (struct sockaddr*)&laddr, llen) < 0) die("connect c1");
  int s1 = accept(L, NULL, NULL);
  if (s1 < 0) die("accept s1");
  int c2 = sock(SOCK_STREAM), c3 = sock(SOCK_STREAM);
  if (connect(c2, (struct sockaddr*)&laddr, llen) < 0 || send(c2, "pending-2: hello", 16, 0) != 16) die("connect c2");
  if (connect(c3, (struct sockaddr*)&laddr, llen) < 0) die("connect c3");

  int Q = sock(SOCK_SEQPACKET);
  if (bind(Q, (struct sockaddr*)&qaddr, qalen) < 0 || listen(Q, 3) < 0) die("seqpacket listener");
  int c4 = sock(SOCK_SEQPACKET);
  if (connect(c4, (struct sockaddr*)&qaddr, qalen) < 0) die("connect c4");
  int s4 = accept(Q, NULL, NULL);
  if (s4 < 0) die("accept s4");

  unlink(dname);
  int R = sock(SOCK_DGRAM), S = sock(SOCK_DGRAM), T = sock(SOCK_DGRAM);
  if (bind(R, (struct sockaddr*)&daddr, dalen) < 0) die("bind R");
  if (connect(S, (struct sockaddr*)&daddr, dalen) < 0) die("connect S");
  if (bind(T, (struct sockaddr*)&taddr, talen) < 0) die("bind T");
  int U = sock(SOCK_STREAM);

  struct flow f1 = {c1, s1, 1, 0, 0}, f2 = {s1, c1, 2, 0, 0};
  for (int k = 0; k < 10; ++k) flow_send(&f1, 50);
  for (int k = 0; k < 6; ++k) flow_send(&f2, 50);
  uint64_t q_sent[2] = {0, 0}, q_got[2] = {0, 0}, d_sent = 0, d_got = 0;
  for (int k = 0; k < 3; ++k) {
    rec_send(c4, &q_sent[0], 3, NULL, 0);
    rec_send(s4, &q_sent[1], 4, NULL, 0);
  }
  // Datagram number n comes from S when n is even, from T when it is odd.
  for (int k = 0; k < 4; ++k) rec_send(d_sent % 2 ? T : S, &d_sent, 5, d_sent % 2 ? &daddr : NULL, dalen);

  char trigger[4300];
  snprintf(trigger, sizeof trigger, "%s.accept", ws_path);
  int pending_taken = 0;
  for (unsigned long long i = 1;; ++i) {
    flow_check(&f1, 50);
    flow_send(&f1, 50);
    flow_check(&f2, 50);
    flow_send(&f2, 50);
    rec_check(s4, &q_got[0], 3, NULL, NULL);
    rec_send(c4, &q_sent[0], 3, NULL, 0);
    rec_check(c4, &q_got[1], 4, NULL, NULL);
    rec_send(s4, &q_sent[1], 4, NULL, 0);
    struct sockaddr_un from;
    socklen_t fromlen = sizeof from;
    const uint64_t n = d_got;
    rec_check(R, &d_got, 5, &from, &fromlen);
    if (n % 2 == 0 && fromlen > sizeof(sa_family_t))
      ws_failf("datagram %llu from S (unbound) came with a %u-byte address", (unsigned long long)n, fromlen);
    if (n % 2 == 1 && (fromlen != talen || memcmp(from.sun_path, tname, tlen) != 0))
      ws_failf("datagram %llu from T came from another address (%u bytes)", (unsigned long long)n, fromlen);
    rec_send(d_sent % 2 ? T : S, &d_sent, 5, d_sent % 2 ? &daddr : NULL, dalen);

    check_name(L, 0, lname, llen_name, "listener");
    check_name(s1, 0, lname, llen_name, "accepted s1");
    check_name(c1, 1, lname, llen_name, "client c1");
    check_name(c1, 0, "", 0, "client c1");
    check_name(Q, 0, qname, qlen, "seqpacket listener");
    check_name(c4, 1, qname, qlen, "seqpacket client");
    check_name(R, 0, dname, dlen, "dgram R");
    check_name(S, 1, dname, dlen, "dgram S");
    check_name(T, 0, tname, tlen, "dgram T");
    check_name(U, 0, "", 0, "unbound U");
    struct stat st;
    if (stat(lname, &st) < 0 || !S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != 0640 || st.st_uid != 1234 ||
        st.st_gid != 5678)
      ws_failf("socket file %s: mode %o owner %u:%u (%s)", lname, st.st_mode, st.st_uid, st.st_gid, strerror(errno));
    int acc = 0;
    socklen_t alen = sizeof acc;
    if (getsockopt(L, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) < 0 || acc != 1) ws_failf("the listener does not listen");
    if (getsockopt(s1, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) < 0 || acc != 0) ws_failf("s1 listens");
    if (!pending_taken && access(trigger, F_OK) == 0) {
      take_pending(L, c2, c3, &laddr, llen);
      pending_taken = 1;
    }
    ws_write(i);
    ws_sleep_ms(10);
  }
}
