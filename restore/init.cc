#include "restore/init.h"

#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "common/error.h"
#include "common/file_util.h"
#include "launcher/reaper.h"
#include "restore/stub.h"

namespace stasis::restore {

int run_restore_init(const RestorePlan& plan, int control_fd) {
  prctl(PR_SET_NAME, "stasis-init");
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  clone_args args{};
  args.exit_signal = SIGCHLD;
  const pid_t wanted = plan.task.pid();
  args.set_tid = reinterpret_cast<uint64_t>(&wanted);
  args.set_tid_size = 1;
  long child = syscall(SYS_clone3, &args, sizeof args);
  if (child < 0) {
    // The stub never ran: tell the restorer through the control pipe the stub would have used.
    StubReport bad;
    snprintf(bad.error, sizeof bad.error, "create pid %d in the new PID namespace (clone3 set_tid): %s", wanted,
             describe_errno(errno).c_str());
    (void)!write(control_fd, &bad, sizeof bad);
    return 1;
  }
  if (child == 0) run_stub(plan, control_fd);
  // The job alone holds what it inherits from the restorer (a pipe's reader left here would
  // keep its writer from EPIPE): we need no fd but our stdio.
  syscall(SYS_close_range, 3, ~0U, 0);
  return launcher::forward_signals_and_reap(static_cast<pid_t>(child), all);
}

pid_t find_stub_under_init(pid_t init_pid, int timeout_ms) {
  const std::string path = "/proc/" + std::to_string(init_pid) + "/task/" + std::to_string(init_pid) + "/children";
  for (int waited = 0;; waited += 10) {
    std::string children = read_file(path);
    if (!children.empty()) return std::stoi(children);
    if (waited >= timeout_ms) fail("restore init (pid {}) has no child after {} ms", init_pid, timeout_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace stasis::restore
