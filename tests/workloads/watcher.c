// watcher: an inotify instance whose watches must come back with their descriptors:
//   wd 1  the folder STATUS_FILE.dir, for IN_CREATE | IN_DELETE
//   wd 2  a watch removed at start (its descriptor is not used again)
//   wd 3  the file STATUS_FILE.watched, for IN_MODIFY
// Every iteration it creates and deletes a file in the folder and writes to the watched
// file, and must read exactly those events, with those descriptors. With the argument
// "unread" it makes one event at start and never reads it (a dump must refuse that queue).
#define _GNU_SOURCE
#include <sys/inotify.h>
#include <sys/stat.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  char dir[4300], watched[4300], gone_path[4300], scratch[4400];
  snprintf(dir, sizeof dir, "%s.dir", ws_path);
  snprintf(watched, sizeof watched, "%s.watched", ws_path);
  snprintf(gone_path, sizeof gone_path, "%s.gone", ws_path);
  snprintf(scratch, sizeof scratch, "%s/entry", dir);
  int g = open(gone_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (g >= 0) close(g);
  mkdir(dir, 0755);
  int wf = open(watched, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (wf < 0 || in < 0) return 1;
  int wd_dir = inotify_add_watch(in, dir, IN_CREATE | IN_DELETE);
  int gone = inotify_add_watch(in, gone_path, IN_ATTRIB);
  int wd_file = inotify_add_watch(in, watched, IN_MODIFY);
  if (wd_dir != 1 || gone != 2 || wd_file != 3 || inotify_rm_watch(in, gone) < 0) {
    fprintf(stderr, "watcher: descriptors %d %d %d: %s\n", wd_dir, gone, wd_file, strerror(errno));
    return 1;
  }
  char buf[4096] __attribute__((aligned(8)));
  while (read(in, buf, sizeof buf) > 0) {  // the IN_IGNORED of the removed watch
  }
  if (argc > 2 && strcmp(argv[2], "unread") == 0) {
    if (write(wf, "x", 1) != 1) ws_failf("write watched file: %s", strerror(errno));
    for (unsigned long long iter = 1;; ++iter) {
      ws_write(iter);
      ws_sleep_ms(20);
    }
  }
  for (unsigned long long iter = 1;; ++iter) {
    int f = open(scratch, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (f >= 0) close(f);
    unlink(scratch);
    if (write(wf, "x", 1) != 1) ws_failf("write watched file: %s", strerror(errno));
    int created = 0, deleted = 0, modified = 0;
    double deadline = ws_monotonic() + 2.0;
    while (!(created && deleted && modified) && ws_monotonic() < deadline) {
      ssize_t n = read(in, buf, sizeof buf);
      if (n <= 0) {
        ws_sleep_ms(2);
        continue;
      }
      for (char* p = buf; p < buf + n;) {
        struct inotify_event* e = (struct inotify_event*)p;
        if (e->wd == wd_dir && (e->mask & IN_CREATE) && strcmp(e->name, "entry") == 0) created = 1;
        else if (e->wd == wd_dir && (e->mask & IN_DELETE) && strcmp(e->name, "entry") == 0) deleted = 1;
        else if (e->wd == wd_file && (e->mask & IN_MODIFY)) modified = 1;
        else ws_failf("unexpected inotify event: wd %d mask %#x", e->wd, e->mask);
        p += sizeof *e + e->len;
      }
    }
    if (!(created && deleted && modified))
      ws_failf("missing inotify events: create %d delete %d modify %d", created, deleted, modified);
    ws_write(iter);
    ws_sleep_ms(20);
  }
}
