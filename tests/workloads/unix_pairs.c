// unix_pairs: socketpairs of the process with unread data in both directions, whose state
// must survive a checkpoint.
//   stream     SOCK_STREAM pair; 3000 bytes queued towards one end, 1000 towards the other;
//              every iteration 100 bytes are read from each end and the next 100 of each
//              sequence written (as 100-byte sends: tiny ones would fill the send buffer
//              with the overhead of their skbs), so each queue keeps a known content (byte for byte, in order)
//   dgram      SOCK_DGRAM pair; 6 datagrams of different sizes queued each way (sequence
//              number and length in each): one received and one sent per iteration per end
//   seqpacket  SOCK_SEQPACKET pair, the same with records
//   shut_wr    a stream pair whose first end wrote "bye" and shut down for writing: the other
//              end peeks "bye" (and reads end of file past it), the first gets EPIPE
//   shut_rd    a stream pair whose first end shut down for reading: it reads end of file at
//              once, and its peer gets EPIPE
//   shut_seq   a seqpacket pair whose first end sent a 5-byte record and shut down for
//              writing: the other end peeks the record, the first gets EPIPE
//   shut_dg    a datagram pair whose first end shut down for reading: its peer gets EPIPE
//   closed     a stream pair whose second end sent "last" and was closed: the first peeks
//              "last", and its sends get EPIPE
//   peercred   a stream pair made with effective ids 1234:5678: SO_PEERCRED gives them on
//              both ends, with this pid
//   options    O_NONBLOCK on stream[0], FD_CLOEXEC on stream[1], SO_PASSCRED on stream[0],
//              SO_SNDBUF/SO_RCVBUF as set at start, SO_RCVTIMEO 1.5 s and SO_SNDTIMEO 2.5 s
//              on dgram[0], the type of every socket
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "workload_status.h"

static unsigned char seq_byte(int stream, uint64_t i) { return (unsigned char)((i * 2654435761u + stream * 77) >> 11); }

struct flow {
  int from, to;        // fds
  uint64_t sent, got;  // bytes (stream) or records (dgram, seqpacket)
  int id;
};

static void stream_send(struct flow* f, size_t n) {
  unsigned char buf[4096];
  for (size_t k = 0; k < n; ++k) buf[k] = seq_byte(f->id, f->sent + k);
  ssize_t w = send(f->from, buf, n, MSG_NOSIGNAL);
  if (w != (ssize_t)n) ws_failf("stream flow %d: send %zu: %zd (%s)", f->id, n, w, strerror(errno));
  else f->sent += n;
}

static void stream_check(struct flow* f, size_t n) {
  unsigned char buf[256];
  size_t have = 0;
  while (have < n) {
    ssize_t r = recv(f->to, buf + have, n - have, MSG_DONTWAIT);
    if (r <= 0) {
      ws_failf("stream flow %d: recv after %llu bytes: %zd (%s)", f->id, (unsigned long long)f->got, r, strerror(errno));
      return;
    }
    have += (size_t)r;
  }
  for (size_t k = 0; k < n; ++k)
    if (buf[k] != seq_byte(f->id, f->got + k)) {
      ws_failf("stream flow %d: byte %llu is %u, not %u", f->id, (unsigned long long)(f->got + k), buf[k],
               seq_byte(f->id, f->got + k));
      return;
    }
  f->got += n;
}

static size_t record_len(uint64_t i) { return 16 + (i * 37) % 700; }

static void record_send(struct flow* f) {
  unsigned char buf[1024];
  size_t len = record_len(f->sent);
  memcpy(buf, &f->sent, sizeof f->sent);
  for (size_t k = sizeof f->sent; k < len; ++k) buf[k] = seq_byte(f->id, f->sent + k);
  ssize_t w = send(f->from, buf, len, MSG_NOSIGNAL);
  if (w != (ssize_t)len) ws_failf("record flow %d: send: %zd (%s)", f->id, w, strerror(errno));
  else f->sent++;
}

static void record_check(struct flow* f) {
  unsigned char buf[2048];
  ssize_t r = recv(f->to, buf, sizeof buf, MSG_DONTWAIT);
  size_t want = record_len(f->got);
  if (r != (ssize_t)want) {
    ws_failf("record flow %d: record %llu is %zd bytes (%s), not %zu", f->id, (unsigned long long)f->got, r,
             r < 0 ? strerror(errno) : "boundary lost?", want);
    return;
  }
  uint64_t n;
  memcpy(&n, buf, sizeof n);
  if (n != f->got) {
    ws_failf("record flow %d: record %llu arrived as number %llu", f->id, (unsigned long long)f->got,
             (unsigned long long)n);
    return;
  }
  for (size_t k = sizeof n; k < want; ++k)
    if (buf[k] != seq_byte(f->id, n + k)) {
      ws_failf("record flow %d: record %llu differs at byte %zu", f->id, (unsigned long long)n, k);
      return;
    }
  f->got++;
}

static int pair(int type, int sv[2]) {
  if (socketpair(AF_UNIX, type, 0, sv) < 0) {
    fprintf(stderr, "unix_pairs: socketpair: %s\n", strerror(errno));
    exit(1);
  }
  return 0;
}

static int get_int(int fd, int opt) {
  int v = -1;
  socklen_t len = sizeof v;
  getsockopt(fd, SOL_SOCKET, opt, &v, &len);
  return v;
}

static long get_timeout_us(int fd, int opt) {
  struct timeval tv = {0, 0};
  socklen_t len = sizeof tv;
  getsockopt(fd, SOL_SOCKET, opt, &tv, &len);
  return tv.tv_sec * 1000000L + tv.tv_usec;
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  int st[2], dg[2], sp[2], sw[2], sr[2];
  pair(SOCK_STREAM, st);
  pair(SOCK_DGRAM, dg);
  pair(SOCK_SEQPACKET, sp);
  pair(SOCK_STREAM, sw);
  pair(SOCK_STREAM, sr);

  int one = 1, sndbuf = 96 * 1024, rcvbuf = 80 * 1024;
  setsockopt(st[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
  setsockopt(st[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  setsockopt(st[1], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct timeval rto = {1, 500000}, sto = {2, 500000};
  setsockopt(dg[0], SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto);
  setsockopt(dg[0], SOL_SOCKET, SO_SNDTIMEO, &sto, sizeof sto);
  fcntl(st[0], F_SETFL, O_NONBLOCK);
  fcntl(st[1], F_SETFD, FD_CLOEXEC);
  const int st0_sndbuf = get_int(st[0], SO_SNDBUF), st1_rcvbuf = get_int(st[1], SO_RCVBUF);

  struct flow s01 = {st[0], st[1], 0, 0, 1}, s10 = {st[1], st[0], 0, 0, 2};
  struct flow d01 = {dg[0], dg[1], 0, 0, 3}, d10 = {dg[1], dg[0], 0, 0, 4};
  struct flow p01 = {sp[0], sp[1], 0, 0, 5}, p10 = {sp[1], sp[0], 0, 0, 6};
  for (int k = 0; k < 30; ++k) stream_send(&s01, 100);
  for (int k = 0; k < 10; ++k) stream_send(&s10, 100);
  for (int k = 0; k < 6; ++k) {
    record_send(&d01);
    record_send(&d10);
    record_send(&p01);
    record_send(&p10);
  }
  int sq[2], sd[2];
  pair(SOCK_SEQPACKET, sq);
  pair(SOCK_DGRAM, sd);
  if (send(sq[0], "recrd", 5, 0) != 5 || shutdown(sq[0], SHUT_WR) < 0 || shutdown(sd[0], SHUT_RD) < 0) return 1;
  int pc[2], cr[2];
  pair(SOCK_STREAM, pc);
  if (setegid(5678) < 0 || seteuid(1234) < 0) return 1;
  pair(SOCK_STREAM, cr);
  if (seteuid(0) < 0 || setegid(0) < 0) return 1;
  if (send(pc[1], "last", 4, 0) != 4) return 1;
  close(pc[1]);
  if (send(sw[0], "bye", 3, 0) != 3 || shutdown(sw[0], SHUT_WR) < 0 || shutdown(sr[0], SHUT_RD) < 0) {
    fprintf(stderr, "unix_pairs: shutdown setup: %s\n", strerror(errno));
    return 1;
  }

  for (unsigned long long i = 1;; ++i) {
    stream_check(&s01, 100);
    stream_send(&s01, 100);
    stream_check(&s10, 100);
    stream_send(&s10, 100);
    record_check(&d01);
    record_send(&d01);
    record_check(&d10);
    record_send(&d10);
    record_check(&p01);
    record_send(&p01);
    record_check(&p10);
    record_send(&p10);

    char buf[8];
    ssize_t r = recv(sw[1], buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (r != 3 || memcmp(buf, "bye", 3) != 0) ws_failf("shut_wr: peek gave %zd (%s)", r, strerror(errno));
    if (send(sw[0], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != EPIPE)
      ws_failf("shut_wr: a send after SHUT_WR did not fail with EPIPE (%s)", strerror(errno));
    if ((r = recv(sr[0], buf, sizeof buf, MSG_DONTWAIT)) != 0) ws_failf("shut_rd: recv gave %zd, not end of file", r);
    if (send(sr[1], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != EPIPE)
      ws_failf("shut_rd: the peer's send did not fail with EPIPE (%s)", strerror(errno));

    r = recv(sq[1], buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (r != 5 || memcmp(buf, "recrd", 5) != 0) ws_failf("shut_seq: peek gave %zd (%s)", r, strerror(errno));
    if (send(sq[0], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != EPIPE)
      ws_failf("shut_seq: a send after SHUT_WR did not fail with EPIPE (%s)", strerror(errno));
    if (send(sd[1], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != EPIPE)
      ws_failf("shut_dg: a send to a socket shut for reading did not fail with EPIPE (%s)", strerror(errno));
    r = recv(pc[0], buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (r != 4 || memcmp(buf, "last", 4) != 0) ws_failf("closed: peek gave %zd (%s)", r, strerror(errno));
    if (send(pc[0], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != EPIPE)
      ws_failf("closed: a send to the closed peer did not fail with EPIPE (%s)", strerror(errno));
    for (int k = 0; k < 2; ++k) {
      struct ucred c = {0, 0, 0};
      socklen_t clen = sizeof c;
      if (getsockopt(cr[k], SOL_SOCKET, SO_PEERCRED, &c, &clen) < 0 || c.pid != getpid() || c.uid != 1234 ||
          c.gid != 5678)
        ws_failf("peercred[%d]: pid %d uid %u gid %u, not %d 1234 5678", k, c.pid, c.uid, c.gid, getpid());
    }
    if (!(fcntl(st[0], F_GETFL) & O_NONBLOCK)) ws_failf("stream[0] lost O_NONBLOCK");
    if (fcntl(st[1], F_GETFL) & O_NONBLOCK) ws_failf("stream[1] gained O_NONBLOCK");
    if (!(fcntl(st[1], F_GETFD) & FD_CLOEXEC)) ws_failf("stream[1] lost FD_CLOEXEC");
    if (fcntl(st[0], F_GETFD) & FD_CLOEXEC) ws_failf("stream[0] gained FD_CLOEXEC");
    if (get_int(st[0], SO_PASSCRED) != 1) ws_failf("stream[0] lost SO_PASSCRED");
    if (get_int(st[1], SO_PASSCRED) != 0) ws_failf("stream[1] gained SO_PASSCRED");
    if (get_int(st[0], SO_SNDBUF) != st0_sndbuf) ws_failf("stream[0] SO_SNDBUF %d, not %d", get_int(st[0], SO_SNDBUF), st0_sndbuf);
    if (get_int(st[1], SO_RCVBUF) != st1_rcvbuf) ws_failf("stream[1] SO_RCVBUF %d, not %d", get_int(st[1], SO_RCVBUF), st1_rcvbuf);
    if (get_timeout_us(dg[0], SO_RCVTIMEO) != 1500000) ws_failf("dgram[0] SO_RCVTIMEO %ld us", get_timeout_us(dg[0], SO_RCVTIMEO));
    if (get_timeout_us(dg[0], SO_SNDTIMEO) != 2500000) ws_failf("dgram[0] SO_SNDTIMEO %ld us", get_timeout_us(dg[0], SO_SNDTIMEO));
    int types[][2] = {{st[0], SOCK_STREAM}, {st[1], SOCK_STREAM}, {dg[0], SOCK_DGRAM}, {dg[1], SOCK_DGRAM},
                      {sp[0], SOCK_SEQPACKET}, {sp[1], SOCK_SEQPACKET}};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; ++k)
      if (get_int(types[k][0], SO_TYPE) != types[k][1]) ws_failf("fd %d has type %d", types[k][0], get_int(types[k][0], SO_TYPE));
    ws_write(i);
    ws_sleep_ms(10);
  }
}
