#include "restore/init.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "common/error.h"
#include "common/file_util.h"
#include "common/proc.h"
#include "launcher/reaper.h"
#include "restore/stub.h"

namespace stasis::restore {

int run_restore_init(const RestoreTree& tree, int control_fd) {
  prctl(PR_SET_NAME, "stasis-init");
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  const pid_t first = tree.processes.front().task.pid();
  try {
    prepare_container(tree, control_fd, /*keep_stdio=*/true);
    start_processes(tree, kInitProcess, tree.processes.front().control_fd());
  } catch (const std::exception& e) {
    // The stub never ran: tell the restorer through the control pipe the stubs use.
    report_failure(tree.processes.front().control_fd(), first, e.what());
    return 1;
  }
  // The job alone holds what it inherits from the restorer (a pipe's reader left here would
  // keep its writer from EPIPE): we need no fd but our stdio.
  syscall(SYS_close_range, 3, ~0U, 0);
  return launcher::forward_signals_and_reap(first, all);
}

std::map<pid_t, pid_t> find_host_pids(pid_t init_pid, size_t count, int timeout_ms) {
  for (int waited = 0;; waited += 5) {
    std::map<pid_t, pid_t> found;
    std::vector<pid_t> walk{init_pid};
    while (!walk.empty()) {
      const pid_t p = walk.back();
      walk.pop_back();
      try {
        for (pid_t tid : proc::list_tasks(p))
          for (pid_t c : proc::list_children(p, tid)) {
            const auto status = proc::read_status(c);
            if (!status.ns_pid.empty()) found[status.ns_pid.back()] = c;
            walk.push_back(c);
          }
      } catch (const Error&) {
        // gone meanwhile
      }
    }
    if (found.size() >= count) return found;
    if (waited >= timeout_ms)
      fail("the restored container (pid 1: host pid {}) has {} of its {} processes after {} ms", init_pid,
           found.size(), count, timeout_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace stasis::restore
