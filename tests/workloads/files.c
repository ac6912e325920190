// files: open files whose state must survive a checkpoint. Files live next to the status file.
//   log      opened O_WRONLY|O_CREAT|O_TRUNC; one line appended per iteration; the offset
//            (lseek SEEK_CUR) and the size must match what was written
//   append   opened O_APPEND (flag read back); one line per iteration; size must match
//   deleted  created with known bytes, then unlinked; re-read with pread every iteration;
//            st_nlink must stay 0
//   ro       read-only file of known bytes; 16 bytes read per iteration at an offset that
//            advances by exactly 16 (wrapping to 0 at the end)
//   memfd    memfd "stasis-memfd" of 12 KiB of known bytes, sealed against shrinking and
//            growing; 16 bytes read per iteration (offset advancing, wrapping); its name,
//            seals, size and contents are checked, and ftruncate must fail
//   opath    an O_PATH fd of the ro file: O_PATH kept, fstat gives the ro file's size
//   pipe     a pipe holding 1000 buffered bytes; every iteration 10 bytes are read and the
//            next 10 bytes of the sequence written, so the buffer keeps a known content
//   proc     /proc/self/stat held open and read again every iteration (a kernel file: reopened
//            in the new container whatever its inode, size and mtime)
// Also the close-on-exec flag of the log fd is read back.
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "workload_status.h"

static unsigned char pattern(uint64_t i) { return (unsigned char)((i * 2654435761u) >> 13); }

static int open_or_die(const char* path, int flags) {
  int fd = open(path, flags, 0644);
  if (fd < 0) {
    fprintf(stderr, "files: open %s: %s\n", path, strerror(errno));
    exit(1);
  }
  return fd;
}

static void write_pattern(int fd, size_t len) {
  unsigned char buf[4096];
  for (size_t off = 0; off < len; off += sizeof buf) {
    size_t n = len - off < sizeof buf ? len - off : sizeof buf;
    for (size_t i = 0; i < n; ++i) buf[i] = pattern(off + i);
    if (write(fd, buf, n) != (ssize_t)n) {
      fprintf(stderr, "files: write: %s\n", strerror(errno));
      exit(1);
    }
  }
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  char path[4300];

  snprintf(path, sizeof path, "%s.log", ws_path);
  int log_fd = open_or_die(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC);
  off_t log_off = 0;

  snprintf(path, sizeof path, "%s.append", ws_path);
  int app_fd = open_or_die(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND);
  off_t app_size = 0;

  const size_t deleted_len = 64 * 1024;
  snprintf(path, sizeof path, "%s.deleted", ws_path);
  int del_fd = open_or_die(path, O_RDWR | O_CREAT | O_TRUNC);
  write_pattern(del_fd, deleted_len);
  if (unlink(path) < 0) {
    fprintf(stderr, "files: unlink %s: %s\n", path, strerror(errno));
    return 1;
  }

  const off_t ro_len = 64 * 1024;
  snprintf(path, sizeof path, "%s.ro", ws_path);
  int tmp = open_or_die(path, O_WRONLY | O_CREAT | O_TRUNC);
  write_pattern(tmp, (size_t)ro_len);
  close(tmp);
  int ro_fd = open_or_die(path, O_RDONLY);
  off_t ro_off = 0;
  int path_fd = open_or_die(path, O_PATH);

  const off_t memfd_len = 12 * 1024;
  const int memfd_seals = F_SEAL_SHRINK | F_SEAL_GROW;
  int mem_fd = memfd_create("stasis-memfd", MFD_ALLOW_SEALING);
  if (mem_fd < 0) {
    perror("memfd_create");
    return 1;
  }
  write_pattern(mem_fd, (size_t)memfd_len);
  if (fcntl(mem_fd, F_ADD_SEALS, memfd_seals) < 0 || lseek(mem_fd, 0, SEEK_SET) != 0) {
    perror("memfd seals");
    return 1;
  }
  off_t mem_off = 0;

  int proc_fd = open_or_die("/proc/self/stat", O_RDONLY);

  int p[2];
  if (pipe(p) < 0) {
    perror("pipe");
    return 1;
  }
  const int buffered = 1000;
  uint64_t pipe_read = 0, pipe_written = 0;  // positions in the byte sequence pattern()
  {
    unsigned char buf[1000];
    for (int i = 0; i < buffered; ++i) buf[i] = pattern(pipe_written++);
    if (write(p[1], buf, buffered) != buffered) {
      perror("pipe write");
      return 1;
    }
  }

  for (unsigned long long iter = 1;; ++iter) {
    char line[64];
    int n = snprintf(line, sizeof line, "line %llu\n", iter);

    // log: plain sequential writes; offset and size must follow.
    if (write(log_fd, line, (size_t)n) != n) ws_failf("log write: %s", strerror(errno));
    log_off += n;
    off_t cur = lseek(log_fd, 0, SEEK_CUR);
    if (cur != log_off) ws_failf("log offset %lld, expected %lld", (long long)cur, (long long)log_off);
    struct stat st;
    if (fstat(log_fd, &st) < 0 || st.st_size != log_off)
      ws_failf("log size %lld, expected %lld", (long long)st.st_size, (long long)log_off);
    int fdflags = fcntl(log_fd, F_GETFD);
    if (fdflags < 0 || !(fdflags & FD_CLOEXEC)) ws_failf("log fd lost FD_CLOEXEC (%d)", fdflags);

    // append: O_APPEND must still be set, and the file grows by exactly one line.
    int flags = fcntl(app_fd, F_GETFL);
    if (flags < 0 || !(flags & O_APPEND)) ws_failf("append fd lost O_APPEND (flags %#x)", flags);
    if ((flags & O_ACCMODE) != O_WRONLY) ws_failf("append fd access mode %d, expected O_WRONLY", flags & O_ACCMODE);
    if (write(app_fd, line, (size_t)n) != n) ws_failf("append write: %s", strerror(errno));
    app_size += n;
    if (fstat(app_fd, &st) < 0 || st.st_size != app_size)
      ws_failf("append size %lld, expected %lld", (long long)st.st_size, (long long)app_size);
    if (lseek(app_fd, 0, SEEK_CUR) != app_size) ws_failf("append offset is not at the end");

    // deleted: contents and link count.
    unsigned char buf[4096];
    off_t off = (off_t)((iter * 4096) % deleted_len);
    if (pread(del_fd, buf, sizeof buf, off) != (ssize_t)sizeof buf) {
      ws_failf("pread deleted file: %s", strerror(errno));
    } else {
      for (size_t i = 0; i < sizeof buf; ++i)
        if (buf[i] != pattern((uint64_t)off + i)) {
          ws_failf("deleted file byte %lld is %u, expected %u", (long long)off + (long long)i, buf[i],
                   pattern((uint64_t)off + i));
          break;
        }
    }
    if (fstat(del_fd, &st) < 0 || st.st_nlink != 0 || st.st_size != (off_t)deleted_len)
      ws_failf("deleted file: nlink %lu size %lld, expected 0 and %zu", (unsigned long)st.st_nlink,
               (long long)st.st_size, deleted_len);

    // memfd: name, seals, size, contents at the offset, which advances by 16.
    {
      char self[64], target[256] = {0};
      snprintf(self, sizeof self, "/proc/self/fd/%d", mem_fd);
      if (readlink(self, target, sizeof target - 1) < 0 || strncmp(target, "/memfd:stasis-memfd", 19) != 0)
        ws_failf("memfd is now '%s'", target);
      if (fcntl(mem_fd, F_GET_SEALS) != memfd_seals) ws_failf("memfd seals %#x", fcntl(mem_fd, F_GET_SEALS));
      if (ftruncate(mem_fd, 0) == 0) ws_failf("the sealed memfd could be truncated");
      if (fstat(mem_fd, &st) < 0 || st.st_size != memfd_len) ws_failf("memfd size %lld", (long long)st.st_size);
      if (mem_off + 16 > memfd_len) {
        mem_off = 0;
        lseek(mem_fd, 0, SEEK_SET);
      }
      if (lseek(mem_fd, 0, SEEK_CUR) != mem_off) ws_failf("memfd offset is not %lld", (long long)mem_off);
      if (read(mem_fd, buf, 16) != 16) ws_failf("memfd read: %s", strerror(errno));
      for (int i = 0; i < 16; ++i)
        if (buf[i] != pattern((uint64_t)mem_off + (uint64_t)i)) {
          ws_failf("memfd byte %lld differs", (long long)mem_off + i);
          break;
        }
      mem_off += 16;
    }

    // opath: still an O_PATH fd of the ro file.
    if (!(fcntl(path_fd, F_GETFL) & O_PATH)) ws_failf("the O_PATH fd lost O_PATH");
    if (fstat(path_fd, &st) < 0 || st.st_size != ro_len) ws_failf("the O_PATH fd does not name the ro file");

    // ro: the offset advances by 16 per iteration.
    if (ro_off + 16 > ro_len) {
      ro_off = 0;
      lseek(ro_fd, 0, SEEK_SET);
    }
    cur = lseek(ro_fd, 0, SEEK_CUR);
    if (cur != ro_off) ws_failf("read-only file offset %lld, expected %lld", (long long)cur, (long long)ro_off);
    if (read(ro_fd, buf, 16) != 16) {
      ws_failf("read-only file read: %s", strerror(errno));
    } else {
      for (int i = 0; i < 16; ++i)
        if (buf[i] != pattern((uint64_t)ro_off + (uint64_t)i)) {
          ws_failf("read-only file byte %lld is wrong", (long long)ro_off + i);
          break;
        }
    }
    ro_off += 16;

    // proc: still readable.
    if (pread(proc_fd, buf, 64, 0) <= 0) ws_failf("/proc/self/stat read: %s", strerror(errno));

    // pipe: buffered count, then rotate 10 bytes through it.
    int avail = -1;
    if (ioctl(p[0], FIONREAD, &avail) < 0 || avail != buffered)
      ws_failf("pipe holds %d bytes, expected %d", avail, buffered);
    if (read(p[0], buf, 10) != 10) {
      ws_failf("pipe read: %s", strerror(errno));
    } else {
      for (int i = 0; i < 10; ++i)
        if (buf[i] != pattern(pipe_read + (uint64_t)i)) {
          ws_failf("pipe byte %llu is wrong", (unsigned long long)(pipe_read + (uint64_t)i));
          break;
        }
    }
    pipe_read += 10;
    for (int i = 0; i < 10; ++i) buf[i] = pattern(pipe_written++);
    if (write(p[1], buf, 10) != 10) ws_failf("pipe write: %s", strerror(errno));

    ws_write(iter);
    ws_sleep_ms(20);
  }
}
