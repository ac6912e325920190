// mounts: a container job that mounts things of its own, then checks across checkpoint and
// restore that they stay as it left them. Its mount points are made next to the status file
// (the container shares the host's file system), under STATUS.mnt/:
//   tmpfs/         a tmpfs (size=2m, mode=0750, nosuid, nodev) holding a file with fixed
//                  contents, owner, mode and mtime, a directory, a symlink, a hard link, a fifo,
//                  and "counter", which grows by 8 bytes each iteration
//   tmpfs/view/    a read-only bind of tmpfs/dir (a bind whose source is on the job's tmpfs)
//   bind/          a bind of src/ (a host directory); "log" there grows by 8 bytes each iteration
//   proc/          a proc instance with hidepid=2
// Each iteration checks all of it: contents, owners, modes, times, mount options and flags
// (from /proc/self/mountinfo), and that each growing file is exactly 8 bytes per iteration.
// Files are opened only for the moment of a read or write.
// With "overlay" it also mounts an overlay (a file system restore does not recreate): the dump
// must refuse it.
#define _GNU_SOURCE
#include <sys/mount.h>
#include <sys/stat.h>

#include "workload_status.h"

static char base[4300], tmpfs[4400], view[4400], bindp[4400], src[4400], procp[4400];

static void path_of(char* out, size_t size, const char* dir, const char* name) { snprintf(out, size, "%s/%s", dir, name); }

static void make_dir(const char* p) {
  if (mkdir(p, 0755) < 0 && errno != EEXIST) ws_failf("mkdir %s: %s", p, strerror(errno));
}

static void write_new(const char* dir, const char* name, const char* text, mode_t mode, uid_t uid, gid_t gid) {
  char p[4600];
  path_of(p, sizeof p, dir, name);
  int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) ws_failf("write %s: %s", p, strerror(errno));
  if (fd >= 0) close(fd);
  if (chown(p, uid, gid) < 0 || chmod(p, mode) < 0) ws_failf("chown/chmod %s: %s", p, strerror(errno));
  struct timespec t[2] = {{1000000000, 5}, {1000000000, 123456789}};
  if (utimensat(AT_FDCWD, p, t, 0) < 0) ws_failf("utimensat %s: %s", p, strerror(errno));
}

static void setup(int overlay) {
  make_dir(base);
  make_dir(tmpfs);
  make_dir(bindp);
  make_dir(src);
  make_dir(procp);
  if (mount("stasis-test-job", tmpfs, "tmpfs", MS_NOSUID | MS_NODEV, "size=2m,mode=0750") < 0)
    ws_failf("mount tmpfs: %s", strerror(errno));
  char p[4600], q[4600];
  write_new(tmpfs, "fixed", "fixed contents\n", 0640, 1000, 100);
  path_of(p, sizeof p, tmpfs, "dir");
  make_dir(p);
  write_new(p, "inner", "inner file\n", 0600, 0, 0);
  path_of(p, sizeof p, tmpfs, "link");
  if (symlink("dir/inner", p) < 0) ws_failf("symlink: %s", strerror(errno));
  path_of(p, sizeof p, tmpfs, "fixed");
  path_of(q, sizeof q, tmpfs, "hard");
  if (link(p, q) < 0) ws_failf("link: %s", strerror(errno));
  path_of(p, sizeof p, tmpfs, "fifo");
  if (mkfifo(p, 0620) < 0 || chmod(p, 0620) < 0) ws_failf("mkfifo: %s", strerror(errno));
  make_dir(view);
  path_of(p, sizeof p, tmpfs, "dir");
  if (mount(p, view, NULL, MS_BIND, NULL) < 0 || mount(NULL, view, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
    ws_failf("read-only bind of %s: %s", p, strerror(errno));
  if (mount(src, bindp, NULL, MS_BIND, NULL) < 0) ws_failf("bind %s: %s", src, strerror(errno));
  if (mount("proc", procp, "proc", MS_NOSUID | MS_NOEXEC, "hidepid=2") < 0) ws_failf("mount proc: %s", strerror(errno));
  if (overlay) {
    char lower[4600], upper[4600], work[4600], merged[4600];
    path_of(lower, sizeof lower, base, "lower");
    path_of(upper, sizeof upper, base, "upper");
    path_of(work, sizeof work, base, "work");
    path_of(merged, sizeof merged, base, "merged");
    make_dir(lower);
    make_dir(upper);
    make_dir(work);
    make_dir(merged);
    char opts[20000];
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
    if (mount("overlay", merged, "overlay", 0, opts) < 0) ws_failf("mount overlay: %s", strerror(errno));
  }
}

static void check_file(const char* p, const char* text, mode_t mode, uid_t uid, gid_t gid, nlink_t links) {
  struct stat st;
  if (stat(p, &st) < 0) return ws_failf("stat %s: %s", p, strerror(errno));
  if ((st.st_mode & 07777) != mode || st.st_uid != uid || st.st_gid != gid || st.st_nlink != links)
    return ws_failf("%s: mode %o owner %u:%u links %lu, expected %o %u:%u %lu", p, st.st_mode & 07777, st.st_uid,
                    st.st_gid, (unsigned long)st.st_nlink, mode, uid, gid, (unsigned long)links);
  if (st.st_mtim.tv_sec != 1000000000 || st.st_mtim.tv_nsec != 123456789)
    return ws_failf("%s: mtime %ld.%09ld", p, (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  char buf[128] = {0};
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
  if (fd >= 0) close(fd);
  if (n < 0 || strcmp(buf, text) != 0) ws_failf("%s: contents '%s'", p, buf);
}

// Appends 8 bytes (the iteration) to dir/name, after checking it holds exactly `before` of them.
static void grow(const char* dir, const char* name, unsigned long long before) {
  char p[4600];
  path_of(p, sizeof p, dir, name);
  int fd = open(p, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return ws_failf("open %s: %s", p, strerror(errno));
  struct stat st;
  fstat(fd, &st);
  unsigned long long last = 0;
  if ((unsigned long long)st.st_size != before * 8) {
    ws_failf("%s holds %lld bytes, expected %llu", p, (long long)st.st_size, before * 8);
  } else if (before > 0 && (pread(fd, &last, 8, st.st_size - 8) != 8 || last != before)) {
    ws_failf("%s: last record %llu, expected %llu", p, last, before);
  } else {
    unsigned long long next = before + 1;
    if (write(fd, &next, 8) != 8) ws_failf("append to %s: %s", p, strerror(errno));
  }
  close(fd);
}

// The mountinfo line of mount point p must hold each of the words.
static void check_mount(const char* p, const char* want1, const char* want2) {
  char buf[65536];
  int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
  if (fd >= 0) close(fd);
  if (n <= 0) return ws_failf("read mountinfo: %s", strerror(errno));
  buf[n] = 0;
  char needle[4500];
  snprintf(needle, sizeof needle, " %s ", p);
  char* line = strstr(buf, needle);
  if (!line) return ws_failf("%s is not mounted", p);
  char* end = strchr(line, '\n');
  if (end) *end = 0;
  if (!strstr(line, want1) || !strstr(line, want2)) ws_failf("mount %s: '%s' lacks '%s' or '%s'", p, line, want1, want2);
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS [overlay]");
  snprintf(base, sizeof base, "%s.mnt", argv[1]);
  path_of(tmpfs, sizeof tmpfs, base, "tmpfs");
  path_of(view, sizeof view, tmpfs, "view");
  path_of(bindp, sizeof bindp, base, "bind");
  path_of(src, sizeof src, base, "src");
  path_of(procp, sizeof procp, base, "proc");
  setup(argc > 2 && strcmp(argv[2], "overlay") == 0);
  char p[4600];
  for (unsigned long long i = 0;; ++i) {
    if (!ws_failed()) {
      path_of(p, sizeof p, tmpfs, "fixed");
      check_file(p, "fixed contents\n", 0640, 1000, 100, 2);
      path_of(p, sizeof p, tmpfs, "hard");
      check_file(p, "fixed contents\n", 0640, 1000, 100, 2);
      path_of(p, sizeof p, tmpfs, "link");
      check_file(p, "inner file\n", 0600, 0, 0, 1);
      char target[64] = {0};
      if (readlink(p, target, sizeof target - 1) < 0 || strcmp(target, "dir/inner") != 0) ws_failf("%s -> '%s'", p, target);
      path_of(p, sizeof p, view, "inner");
      check_file(p, "inner file\n", 0600, 0, 0, 1);
      struct stat st;
      path_of(p, sizeof p, tmpfs, "fifo");
      if (lstat(p, &st) < 0 || !S_ISFIFO(st.st_mode) || (st.st_mode & 0777) != 0620) ws_failf("fifo %s", p);
      path_of(p, sizeof p, view, "new");
      int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
      if (fd >= 0 || errno != EROFS) ws_failf("%s: created in a read-only bind (%s)", p, strerror(errno));
      if (fd >= 0) close(fd);
      check_mount(tmpfs, " rw,nosuid,nodev", "size=2048k,mode=750");
      check_mount(view, " ro,", " - tmpfs stasis-test-job");
      check_mount(bindp, " rw", " - ");
      check_mount(procp, " rw,nosuid,noexec", "hidepid=");
      grow(tmpfs, "counter", i);
      grow(bindp, "log", i);
    }
    ws_write(i);
    ws_sleep_ms(20);
  }
}
