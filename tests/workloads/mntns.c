// mntns: a job that lives in a mount namespace and root of its own, as runc or
// `unshare -m` + pivot_root make them, started as a plain host process (for `dump --pid`).
// Before its first iteration it unshares its mount namespace and builds its root at
// STATUS.root/ (next to the status file), holding:
//   /bin /lib /lib64 /usr  read-only binds of the host's
//   /data                  a tmpfs (size=1m, mode=0755, nosuid) with "file" ("data of the job\n")
//   /data/ro               a read-only bind of /data/sub (a bind whose source is on the tmpfs)
//   /proc                  a proc instance
//   /dev/null              a bind of the host's /dev/null (a file)
//   DIR                    a bind of the status file's folder, at the same path (the status file)
//   WDIR                   a bind of this program's folder, at the same path
// then pivot_root into it, drops the old root and execs itself again from inside (so that
// its mappings are files of the new root), with "inside" as argument. With "chroot" its root
// is a plain directory (not bound onto itself) that it chroots into instead.
//   /kept                  a file of the root alone (not at that path on the host), held open
// It works in /data/sub. Each iteration checks its world: /kept through its fd, the files of its tmpfs, that /usr/bin/env exists, that
// the host's /etc is not there (its root has none), and the mounts in
// /proc/self/mountinfo (types and read-only flags).
#define _GNU_SOURCE
#include <libgen.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "workload_status.h"

static char root[4400];

static void mkdirs(const char* path) {
  char p[4600];
  snprintf(p, sizeof p, "%s", path);
  for (char* s = p + 1; *s; ++s) {
    if (*s != '/') continue;
    *s = 0;
    mkdir(p, 0755);
    *s = '/';
  }
  if (mkdir(p, 0755) < 0 && errno != EEXIST) ws_failf("mkdir %s: %s", p, strerror(errno));
}

static void under_root(char* out, size_t size, const char* path) { snprintf(out, size, "%s%s", root, path); }

static void bind(const char* source, const char* path, int read_only) {
  char target[4600];
  under_root(target, sizeof target, path);
  struct stat st;
  if (stat(source, &st) == 0 && !S_ISDIR(st.st_mode)) {
    int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
  } else {
    mkdirs(target);
  }
  if (mount(source, target, NULL, MS_BIND, NULL) < 0) return ws_failf("bind %s on %s: %s", source, target, strerror(errno));
  if (read_only && mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
    ws_failf("make %s read-only: %s", target, strerror(errno));
}

// Builds the namespace and root, then execs argv[0] "inside" from the new root.
static void setup(char** argv, int plain_chroot) {
  char dir[4400], self[4400], wdir[4400], p[4600], tmp[4400];
  snprintf(tmp, sizeof tmp, "%s", ws_path);
  snprintf(dir, sizeof dir, "%s", dirname(tmp));
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return ws_failf("readlink /proc/self/exe: %s", strerror(errno));
  self[n] = 0;
  snprintf(tmp, sizeof tmp, "%s", self);
  snprintf(wdir, sizeof wdir, "%s", dirname(tmp));
  snprintf(root, sizeof root, "%s.root", ws_path);
  if (unshare(CLONE_NEWNS) < 0) return ws_failf("unshare(CLONE_NEWNS): %s", strerror(errno));
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) return ws_failf("make / private: %s", strerror(errno));
  mkdirs(root);
  if (!plain_chroot && mount(root, root, NULL, MS_BIND, NULL) < 0) return ws_failf("bind the root: %s", strerror(errno));
  bind("/usr/bin", "/bin", 1);
  bind("/usr/lib", "/lib", 1);
  bind("/usr/lib64", "/lib64", 1);
  bind("/usr", "/usr", 1);
  under_root(p, sizeof p, "/kept");
  int kept = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (kept < 0 || write(kept, "kept\n", 5) != 5) ws_failf("write %s: %s", p, strerror(errno));
  if (kept >= 0) close(kept);
  under_root(p, sizeof p, "/data");
  mkdirs(p);
  if (mount("stasis-mntns", p, "tmpfs", MS_NOSUID, "size=1m,mode=0755") < 0) return ws_failf("tmpfs: %s", strerror(errno));
  under_root(p, sizeof p, "/data/file");
  int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0 || write(fd, "data of the job\n", 16) != 16) ws_failf("write %s: %s", p, strerror(errno));
  if (fd >= 0) close(fd);
  under_root(p, sizeof p, "/data/sub");
  mkdirs(p);
  under_root(p, sizeof p, "/data/sub/inner");
  fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) close(fd);
  under_root(p, sizeof p, "/data/sub");
  bind(p, "/data/ro", 1);
  under_root(p, sizeof p, "/proc");
  mkdirs(p);
  if (mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) return ws_failf("proc: %s", strerror(errno));
  under_root(p, sizeof p, "/dev");
  mkdirs(p);
  bind("/dev/null", "/dev/null", 0);
  bind(dir, dir, 0);
  bind(wdir, wdir, 0);
  if (ws_failed()) return;
  if (plain_chroot) {
    if (chdir(root) < 0 || chroot(".") < 0) return ws_failf("chroot %s: %s", root, strerror(errno));
  } else if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 ||
             chdir("/") < 0) {
    return ws_failf("pivot_root into %s: %s", root, strerror(errno));
  }
  // stdio from inside the new root.
  fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd < 0 || dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) return ws_failf("/dev/null: %s", strerror(errno));
  char* args[] = {self, ws_path, "inside", NULL};
  execv(self, args);
  ws_failf("exec %s inside the new root: %s", self, strerror(errno));
  (void)argv;
}

static void check_mount(const char* info, const char* point, const char* type, int read_only) {
  char key[512];
  snprintf(key, sizeof key, " %s ", point);
  for (const char* line = info; *line;) {
    const char* end = strchr(line, '\n');
    if (!end) end = line + strlen(line);
    char l[2048];
    snprintf(l, sizeof l, "%.*s", (int)(end - line), line);
    // "ID PARENT MAJ:MIN ROOT POINT OPTIONS ... - TYPE SOURCE SUPER"
    char* f[6] = {0};
    char* s = l;
    for (int i = 0; i < 6 && s; ++i) {
      f[i] = s;
      s = strchr(s, ' ');
      if (s) *s++ = 0;
    }
    char* dash = s ? strstr(s, "- ") : NULL;
    if (f[4] && strcmp(f[4], point) == 0 && dash) {
      char t[64] = {0};
      sscanf(dash + 2, "%63s", t);
      if (type && strcmp(t, type) != 0) return ws_failf("mount at %s is %s, expected %s", point, t, type);
      const int ro = strncmp(f[5], "ro", 2) == 0 && (f[5][2] == ',' || f[5][2] == 0);
      if (ro != read_only) return ws_failf("mount at %s: options %s, expected %s", point, f[5], read_only ? "ro" : "rw");
      return;
    }
    line = *end ? end + 1 : end;
  }
  ws_failf("no mount at %s in /proc/self/mountinfo", point);
}

static int kept_fd = -1;  // /kept, a file of its root alone, held open all along

static void check_world(void) {
  char buf[64] = {0};
  if (pread(kept_fd, buf, sizeof buf - 1, 0) != 5 || strcmp(buf, "kept\n") != 0)
    return ws_failf("/kept (fd %d): '%s' (%s)", kept_fd, buf, strerror(errno));
  memset(buf, 0, sizeof buf);
  int fd = open("/data/file", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
  if (fd >= 0) close(fd);
  if (n != 16 || strcmp(buf, "data of the job\n") != 0) return ws_failf("/data/file: '%s' (%s)", buf, strerror(errno));
  struct stat st;
  if (stat("/data/ro/inner", &st) < 0) return ws_failf("/data/ro/inner: %s", strerror(errno));
  if (stat("inner", &st) < 0) return ws_failf("inner in the working directory: %s", strerror(errno));
  if (stat("/usr/bin/env", &st) < 0) return ws_failf("/usr/bin/env: %s", strerror(errno));
  if (access("/etc", F_OK) == 0) return ws_failf("the host's /etc is visible: the job is not in its own root");
  static char info[65536];
  fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  n = fd < 0 ? -1 : read(fd, info, sizeof info - 1);
  if (fd >= 0) close(fd);
  if (n <= 0) return ws_failf("read /proc/self/mountinfo: %s", strerror(errno));
  info[n] = 0;
  check_mount(info, "/usr", NULL, 1);
  check_mount(info, "/data", "tmpfs", 0);
  check_mount(info, "/data/ro", "tmpfs", 1);
  check_mount(info, "/proc", "proc", 0);
  check_mount(info, "/dev/null", NULL, 0);
}

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS [chroot|inside]");
  snprintf(root, sizeof root, "%s.root", ws_path);
  const int inside = argc > 2 && strcmp(argv[2], "inside") == 0;
  if (!inside) setup(argv, argc > 2 && strcmp(argv[2], "chroot") == 0);
  kept_fd = open("/kept", O_RDONLY | O_CLOEXEC);
  // Its working directory is a path of its root alone.
  if (inside && chdir("/data/sub") < 0) ws_failf("chdir /data/sub: %s", strerror(errno));
  for (unsigned long long i = 1;; ++i) {
    if (inside) check_world();
    ws_write(inside ? i : 0);
    if (!inside) ws_sleep_ms(1000);  // only a setup that failed gets here
    ws_sleep_ms(20);
  }
}
