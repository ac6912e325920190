// ghosts: files and directories deleted while open ("ghosts"), each case chosen by argv[2];
// files live next to the status file. Checked every iteration, before and after restore:
//   owner   a deleted file and a memfd, each owned by 1234:5678 with mode 0640 / 0600, the
//           file with a fixed mtime: owner, group, mode and mtime stay; the memfd opened a
//           second time through /proc/self/fd stays the same memfd; a memfd only mapped (its
//           fd closed), owned by 1234:5678 with mode 0604, keeps them
//   links   a file with two hard-linked names, each opened on its own (two open file
//           descriptions), then both names deleted: a write through one fd is seen through
//           the other, both fds name one inode, and a second open of the same deleted name
//           (a third description) too; offsets stay per description
//   sparse  a deleted file of 1 GiB holding two 4 KiB runs of data (at 0 and at 512 MiB): its
//           SEEK_DATA/SEEK_HOLE layout, size, data and mtime stay
//   cwd     the working directory was deleted, with a deleted file open in it: it stays a
//           deleted directory with its mode, and the file stays readable, under its old path
//   dirfile a deleted file open in a directory deleted too (nothing else holds it)
//   held    a deleted directory held open by an fd: it stays a deleted directory (no entry
//           can be made in it) with its mode
//   names   a deleted file whose name now belongs to a new file, and a deleted file with a
//           name of 250 characters: contents stay, and the new file keeps its own
//   otherlink  a file opened by a name since deleted, with another hard link left: the dump
//           must refuse it (restore could not find it by a name)
//   rofile RO RW  a file opened through a read-only bind mount (RO) and deleted through a
//           writable one (RW): the dump must refuse it (restore could not make it there)
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "workload_status.h"

static unsigned char pattern(uint64_t i) { return (unsigned char)((i * 2654435761u) >> 13); }

static void die(const char* what, const char* path) {
  fprintf(stderr, "ghosts: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static int make_file(const char* path, uint64_t seed, size_t len) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die("open", path);
  unsigned char buf[4096];
  for (size_t off = 0; off < len; off += sizeof buf) {
    size_t n = len - off < sizeof buf ? len - off : sizeof buf;
    for (size_t i = 0; i < n; ++i) buf[i] = pattern(seed + off + i);
    if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) die("write", path);
  }
  return fd;
}

static void check_bytes(int fd, const char* what, uint64_t seed, off_t off, size_t len) {
  unsigned char buf[4096];
  if (len > sizeof buf) len = sizeof buf;
  if (pread(fd, buf, len, off) != (ssize_t)len) {
    ws_failf("%s: pread at %lld: %s", what, (long long)off, strerror(errno));
    return;
  }
  for (size_t i = 0; i < len; ++i)
    if (buf[i] != pattern(seed + (uint64_t)off + i)) {
      ws_failf("%s: byte %lld differs", what, (long long)off + (long long)i);
      return;
    }
}

static void check_stat(int fd, const char* what, mode_t mode, uid_t uid, gid_t gid) {
  struct stat st;
  if (fstat(fd, &st) < 0) {
    ws_failf("%s: fstat: %s", what, strerror(errno));
    return;
  }
  if ((st.st_mode & 07777) != mode) ws_failf("%s: mode %o, expected %o", what, st.st_mode & 07777, mode);
  if (st.st_uid != uid || st.st_gid != gid)
    ws_failf("%s: owner %u:%u, expected %u:%u", what, st.st_uid, st.st_gid, uid, gid);
  if (st.st_nlink != 0) ws_failf("%s: nlink %lu, expected 0", what, (unsigned long)st.st_nlink);
}

static const struct timespec kMtime = {1000000000, 123456789};

static void check_mtime(int fd, const char* what) {
  struct stat st;
  if (fstat(fd, &st) == 0 && (st.st_mtim.tv_sec != kMtime.tv_sec || st.st_mtim.tv_nsec != kMtime.tv_nsec))
    ws_failf("%s: mtime %lld.%09ld, expected %lld.%09ld", what, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
             (long long)kMtime.tv_sec, kMtime.tv_nsec);
}

static void set_mtime(int fd) {
  struct timespec times[2] = {{0, UTIME_OMIT}, kMtime};
  if (futimens(fd, times) < 0) die("futimens", "");
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 2, "STATUS_FILE owner|links|sparse|cwd|dirfile|held|names|otherlink|rofile RO RW");
  const char* mode = argv[2];
  char path[4400], path2[4600];

  if (strcmp(mode, "owner") == 0) {
    snprintf(path, sizeof path, "%s.owned", ws_path);
    int fd = make_file(path, 1, 8192);
    if (fchown(fd, 1234, 5678) < 0 || fchmod(fd, 0640) < 0) die("chown/chmod", path);
    set_mtime(fd);
    if (unlink(path) < 0) die("unlink", path);
    int mfd = memfd_create("ghosts-owned", 0);
    if (mfd < 0) die("memfd_create", "");
    if (pwrite(mfd, "memfd", 5, 0) != 5 || fchown(mfd, 1234, 5678) < 0 || fchmod(mfd, 0600) < 0) die("memfd", "setup");
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", mfd);
    int mfd_again = open(self, O_RDONLY);  // a second open file description of the memfd
    if (mfd_again < 0) die("reopen", self);
    // A memfd only mapped (its fd closed): restore makes it for the mapping alone.
    int mapped_fd = memfd_create("ghosts-mapped", 0);
    if (mapped_fd < 0 || ftruncate(mapped_fd, 4096) < 0 || fchown(mapped_fd, 1234, 5678) < 0 ||
        fchmod(mapped_fd, 0604) < 0)
      die("mapped memfd", "setup");
    char* mapped = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mapped_fd, 0);
    if (mapped == MAP_FAILED) die("mmap", "mapped memfd");
    close(mapped_fd);
    char map_file[128];
    snprintf(map_file, sizeof map_file, "/proc/self/map_files/%lx-%lx", (unsigned long)mapped,
             (unsigned long)mapped + 4096);
    for (unsigned long long iter = 1;; ++iter) {
      check_stat(fd, "deleted file", 0640, 1234, 5678);
      check_mtime(fd, "deleted file");
      check_bytes(fd, "deleted file", 1, (off_t)(iter % 2) * 4096, 4096);
      check_stat(mfd, "memfd", 0600, 1234, 5678);
      int through_map = open(map_file, O_RDONLY);
      if (through_map < 0) ws_failf("open %s: %s", map_file, strerror(errno));
      else {
        check_stat(through_map, "mapped memfd", 0604, 1234, 5678);
        close(through_map);
      }
      mapped[iter % 4096] = (char)iter;
      char buf[5];
      if (pread(mfd, buf, 5, 0) != 5 || memcmp(buf, "memfd", 5) != 0) ws_failf("memfd contents differ");
      unsigned long long seen = 0;
      if (pwrite(mfd, &iter, sizeof iter, 8) != sizeof iter || pread(mfd_again, &seen, sizeof seen, 8) != sizeof seen ||
          seen != iter)
        ws_failf("a write of %llu to the memfd reads back as %llu through its second open", iter, seen);
      ws_write(iter);
      ws_sleep_ms(20);
    }
  }

  if (strcmp(mode, "links") == 0) {
    snprintf(path, sizeof path, "%s.link-a", ws_path);
    snprintf(path2, sizeof path2, "%s.link-b", ws_path);
    int a = make_file(path, 0, 4096);
    if (link(path, path2) < 0) die("link", path2);
    int b = open(path2, O_RDWR);
    int again = open(path, O_RDONLY);
    if (b < 0 || again < 0) die("open", path2);
    if (unlink(path) < 0 || unlink(path2) < 0) die("unlink", path);
    if (lseek(again, 100, SEEK_SET) != 100) die("lseek", path);
    for (unsigned long long iter = 1;; ++iter) {
      if (pwrite(a, &iter, sizeof iter, 0) != sizeof iter) ws_failf("write through a: %s", strerror(errno));
      unsigned long long seen = 0;
      if (pread(b, &seen, sizeof seen, 0) != sizeof seen || seen != iter)
        ws_failf("a write of %llu through one link reads back as %llu through the other", iter, seen);
      if (pread(again, &seen, sizeof seen, 0) != sizeof seen || seen != iter)
        ws_failf("a write of %llu reads back as %llu through the name opened again", iter, seen);
      struct stat sa, sb, sc;
      if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0 || fstat(again, &sc) < 0 || sa.st_ino != sb.st_ino ||
          sa.st_ino != sc.st_ino || sa.st_dev != sb.st_dev)
        ws_failf("the fds name different inodes");
      if (sa.st_nlink != 0) ws_failf("the linked file has nlink %lu", (unsigned long)sa.st_nlink);
      if (lseek(again, 0, SEEK_CUR) != 100 || lseek(b, 0, SEEK_CUR) != 0) ws_failf("offsets are shared or lost");
      check_bytes(b, "linked file", 0, 4096 - 64, 64);
      ws_write(iter);
      ws_sleep_ms(20);
    }
  }

  if (strcmp(mode, "sparse") == 0) {
    const off_t size = 1 << 30, second = 512 << 20;
    snprintf(path, sizeof path, "%s.sparse", ws_path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) die("open", path);
    unsigned char buf[4096];
    for (size_t i = 0; i < sizeof buf; ++i) buf[i] = pattern(i);
    if (pwrite(fd, buf, sizeof buf, 0) != sizeof buf) die("write", path);
    for (size_t i = 0; i < sizeof buf; ++i) buf[i] = pattern((uint64_t)second + i);
    if (pwrite(fd, buf, sizeof buf, second) != sizeof buf || ftruncate(fd, size) < 0) die("write", path);
    set_mtime(fd);
    if (unlink(path) < 0) die("unlink", path);
    for (unsigned long long iter = 1;; ++iter) {
      const off_t want[][2] = {{0, SEEK_DATA}, {0, SEEK_HOLE}, {4096, SEEK_DATA}, {second, SEEK_HOLE}};
      const off_t expect[] = {0, 4096, second, second + 4096};
      for (int i = 0; i < 4; ++i) {
        off_t got = lseek(fd, want[i][0], (int)want[i][1]);
        if (got != expect[i])
          ws_failf("lseek %s from %lld gives %lld, expected %lld", want[i][1] == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE",
                   (long long)want[i][0], (long long)got, (long long)expect[i]);
      }
      errno = 0;
      if (lseek(fd, second + 4096, SEEK_DATA) != -1 || errno != ENXIO) ws_failf("data after the second run");
      struct stat st;
      if (fstat(fd, &st) < 0 || st.st_size != size) ws_failf("sparse size %lld", (long long)st.st_size);
      check_mtime(fd, "sparse file");
      check_bytes(fd, "sparse file", 0, 0, 4096);
      check_bytes(fd, "sparse file", 0, second, 4096);
      ws_write(iter);
      ws_sleep_ms(20);
    }
  }

  if (strcmp(mode, "cwd") == 0 || strcmp(mode, "dirfile") == 0) {
    // cwd: the working directory is deleted with a deleted file open in it; dirfile: the same
    // directory is not the working directory, and nothing holds it but the file's fd.
    const int cwd = strcmp(mode, "cwd") == 0;
    snprintf(path, sizeof path, "%s.dir", ws_path);
    snprintf(path2, sizeof path2, "%s/inner", path);
    if (mkdir(path, 0751) < 0 || chmod(path, 0751) < 0 || (cwd && chdir(path) < 0)) die("mkdir/chdir", path);
    int inner = make_file(path2, 7, 4096);
    if (unlink(path2) < 0 || rmdir(path) < 0) die("rmdir", path);
    for (unsigned long long iter = 1;; ++iter) {
      struct stat st;
      if (cwd && (stat(".", &st) < 0 || !S_ISDIR(st.st_mode) || st.st_nlink != 0 || (st.st_mode & 07777) != 0751))
        ws_failf("the working directory is not the deleted one (nlink %lu, mode %o)", (unsigned long)st.st_nlink,
                 st.st_mode & 07777);
      if (fstat(inner, &st) < 0 || st.st_nlink != 0) ws_failf("the file in the deleted directory is not deleted");
      char self[64], target[4700] = {0};
      snprintf(self, sizeof self, "/proc/self/fd/%d", inner);
      if (readlink(self, target, sizeof target - 1) < 0 || strncmp(target, path2, strlen(path2)) != 0)
        ws_failf("the file in the deleted directory is now '%s'", target);
      check_bytes(inner, "file in the deleted directory", 7, 0, 4096);
      ws_write(iter);
      ws_sleep_ms(20);
    }
  }

  if (strcmp(mode, "held") == 0) {
    snprintf(path, sizeof path, "%s.held", ws_path);
    if (mkdir(path, 0700) < 0) die("mkdir", path);
    int held = open(path, O_RDONLY | O_DIRECTORY);
    if (held < 0 || rmdir(path) < 0) die("open/rmdir", path);
    for (unsigned long long iter = 1;; ++iter) {
      struct stat st;
      if (fstat(held, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_nlink != 0 || (st.st_mode & 07777) != 0700)
        ws_failf("the held directory is not a deleted one (nlink %lu, mode %o)", (unsigned long)st.st_nlink,
                 st.st_mode & 07777);
      errno = 0;
      if (openat(held, "new", O_RDWR | O_CREAT, 0600) >= 0 || errno != ENOENT)
        ws_failf("a file could be made in the deleted directory (errno %d)", errno);
      ws_write(iter);
      ws_sleep_ms(20);
    }
  }

  if (strcmp(mode, "names") == 0) {
    snprintf(path, sizeof path, "%s.reused", ws_path);
    int old = make_file(path, 3, 4096);
    if (unlink(path) < 0) die("unlink", path);
    close(make_file(path, 5, 100));  // the name now belongs to another file
    const char* dir_end = strrchr(ws_path, '/');
    snprintf(path2, sizeof path2, "%.*s/", (int)(dir_end - ws_path), ws_path);
    size_t at = strlen(path2);
    for (int i = 0; i < 250; ++i) path2[at + (size_t)i] = 'n';
    path2[at + 250] = 0;
    int longname = make_file(path2, 9, 4096);
    if (unlink(path2) < 0) die("unlink", path2);
    for (unsigned long long iter = 1;; ++iter) {
      check_bytes(old, "deleted file whose name was reused", 3, 0, 4096);
      check_bytes(longname, "deleted file with a long name", 9, 0, 4096);
      int now = open(path, O_RDONLY);
      struct stat st;
      if (now < 0 || fstat(now, &st) < 0 || st.st_size != 100) ws_failf("the new file under the reused name changed");
      if (now >= 0) {
        check_bytes(now, "the new file", 5, 0, 100);
        close(now);
      }
      ws_write(iter);
      ws_sleep_ms(20);
    }
  }

  if (strcmp(mode, "rofile") == 0 && argc >= 5) {
    // argv[3] is a file seen through a read-only bind mount, argv[4] the same file through a
    // writable one: opened through the first, deleted through the second.
    int fd = open(argv[3], O_RDONLY);
    if (fd < 0) die("open", argv[3]);
    if (unlink(argv[4]) < 0) die("unlink", argv[4]);
    for (unsigned long long iter = 1;; ++iter) {
      char c;
      if (pread(fd, &c, 1, 0) != 1) ws_failf("read the deleted file: %s", strerror(errno));
      ws_write(iter);
      ws_sleep_ms(20);
    }
  }

  if (strcmp(mode, "otherlink") == 0) {
    // A file opened by one name, that name deleted, another hard link left: the dump must
    // refuse it (restore could not find the file by a name).
    snprintf(path, sizeof path, "%s.first", ws_path);
    snprintf(path2, sizeof path2, "%s.second", ws_path);
    int fd = make_file(path, 2, 4096);
    if (link(path, path2) < 0 || unlink(path) < 0) die("link/unlink", path);
    for (unsigned long long iter = 1;; ++iter) {
      check_bytes(fd, "file with another link", 2, 0, 4096);
      ws_write(iter);
      ws_sleep_ms(20);
    }
  }

  fprintf(stderr, "ghosts: unknown case %s\n", mode);
  return 2;
}
