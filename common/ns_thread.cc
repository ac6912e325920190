#include "common/ns_thread.h"

#include <fcntl.h>
#include <sched.h>

#include <exception>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/file_util.h"

namespace stasis {

namespace {

// Runs enter() then fn() on a new thread; rethrows what either threw.
void on_helper_thread(const std::function<void()>& enter, const std::function<void()>& fn) {
  std::exception_ptr error;
  std::thread helper([&] {
    try {
      enter();
      fn();
    } catch (...) {
      error = std::current_exception();
    }
  });
  helper.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace

void run_in_namespaces(pid_t pid, std::initializer_list<std::string_view> kinds, const std::function<void()>& fn) {
  struct Target {
    std::string path;
    UniqueFd fd;
  };
  std::vector<Target> targets;
  for (std::string_view kind : kinds) {
    std::string path = fmt::format("/proc/{}/ns/{}", pid, kind);
    UniqueFd fd = open_or_throw(path, O_RDONLY | O_CLOEXEC);
    targets.push_back({std::move(path), std::move(fd)});
  }
  on_helper_thread(
      [&] {
        for (const auto& t : targets) check_sys(::setns(t.fd.get(), 0), "setns into {}", t.path);
      },
      fn);
}

void run_in_fresh_namespaces(int clone_flags, const std::function<void()>& fn) {
  on_helper_thread([&] { check_sys(::unshare(clone_flags), "unshare({:#x}) on a helper thread", clone_flags); }, fn);
}

}  // namespace stasis
