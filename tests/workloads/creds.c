// creds: drops to distinct real/effective/saved uids and gids (1004/1005/1006, 1001/1002/1003)
// with supplementary groups 44 and 45 and no_new_privs, sets itself dumpable again (the uid
// change cleared it), lowers its priority to nice 7 and takes the SCHED_BATCH policy, then
// checks every iteration that all
// of this is still exactly so: restore must give a process its credentials and attributes
// back. The status file's folder must be writable by uid 1005.
#define _GNU_SOURCE
#include <grp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "workload_status.h"

int main(int argc, char** argv) {
  ws_init(argc, argv, 1, "STATUS_FILE");
  const gid_t groups[2] = {44, 45};
  if (setgroups(2, groups) < 0 || setresgid(1001, 1002, 1003) < 0 || setresuid(1004, 1005, 1006) < 0 ||
      prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    ws_failf("dropping credentials failed: errno %d", errno);
  struct sched_param batch = {0};
  if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0 || setpriority(PRIO_PROCESS, 0, 7) < 0 ||
      sched_setscheduler(0, SCHED_BATCH, &batch) < 0)
    ws_failf("dumpable, nice or policy: errno %d", errno);
  for (unsigned long long count = 1;; ++count) {
    uid_t r, e, s;
    gid_t rg, eg, sg;
    gid_t list[8];
    getresuid(&r, &e, &s);
    getresgid(&rg, &eg, &sg);
    int n = getgroups(8, list);
    if (r != 1004 || e != 1005 || s != 1006) ws_failf("uids are %d/%d/%d", (int)r, (int)e, (int)s);
    if (rg != 1001 || eg != 1002 || sg != 1003) ws_failf("gids are %d/%d/%d", (int)rg, (int)eg, (int)sg);
    if (n != 2 || list[0] != 44 || list[1] != 45) ws_failf("%d supplementary groups", n);
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) ws_failf("no_new_privs is lost");
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1) ws_failf("dumpable is %d", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);
    if (errno == 0 && nice != 7) ws_failf("nice is %d, expected 7", nice);
    if (sched_getscheduler(0) != SCHED_BATCH) ws_failf("policy is %d, expected SCHED_BATCH", sched_getscheduler(0));
    ws_write(count);
    ws_sleep_ms(10);
  }
}
