#include "launcher/reaper.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace stasis::launcher {

int exec_failure_status(int err) {
  return err == ENOENT || err == ENOTDIR ? kExitCommandNotFound : kExitNotExecutable;
}

int exec_argv(const std::vector<std::string>& argv, int exec_report) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  int err = errno;
  if (exec_report >= 0) {
    char said[32];
    int n = std::snprintf(said, sizeof said, "X%d\n", err);
    while (::write(exec_report, said, static_cast<size_t>(n)) < 0 && errno == EINTR) {
    }
  }
  std::fprintf(stderr, "stasis run: cannot execute '%s': %s\n", argv[0].c_str(), std::strerror(err));
  std::fflush(stderr);
  return exec_failure_status(err);
}

int run_reaper(const std::vector<std::string>& argv, int exec_report) {
  ::prctl(PR_SET_NAME, "stasis-init");
  sigset_t all, old;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, &old);
  pid_t child = ::fork();
  if (child < 0) {
    std::perror("stasis init: fork");
    return 127;
  }
  if (child == 0) {
    ::setpgid(0, 0);
    // -t: the job's group is the terminal's foreground one (SIGTTOU is still blocked here).
    if (::isatty(0)) ::tcsetpgrp(0, ::getpid());
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    ::_exit(exec_argv(argv, exec_report));
  }
  // Only the job's exec (or its failure) may end the report.
  if (exec_report >= 0) ::close(exec_report);
  return forward_signals_and_reap(child, all);
}

int forward_signals_and_reap(pid_t child, const sigset_t& blocked) {
  for (;;) {
    siginfo_t info{};
    int sig = ::sigwaitinfo(&blocked, &info);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      // Forward to the job (its whole process group, as a terminal would).
      ::kill(-child, sig);
      ::kill(child, sig);
      continue;
    }
    // Reap everything that ended: the job and any orphan handed to us.
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      if (pid == child) {
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
  }
}

}  // namespace stasis::launcher
