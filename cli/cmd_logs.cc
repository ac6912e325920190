// `stasis logs NAME [-f]`: what the job wrote, from its log (--log, -d, or -t).
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "cli/cli.h"
#include "common/error.h"
#include "common/fd.h"
#include "common/file_util.h"
#include "launcher/container.h"
#include "launcher/state_store.h"

namespace stasis::cli {

namespace {

// Copies what fd has from its offset to stdout; false when stdout is gone (a closed pipe).
bool copy_available(int fd) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;
    try {
      write_all(1, std::as_bytes(std::span(buf, static_cast<size_t>(n))), "stdout");
    } catch (const Error&) {
      return false;
    }
  }
}

int logs(const Cli& cli, const std::string& name, bool follow) {
  launcher::StateStore store(cli.global.root);
  pb::ContainerState state = store.load(name);
  const std::string& path = state.config().log_path();
  if (path.empty()) {
    fail("container {} has no log: its output went to the terminal of the 'stasis run' that started it (start it "
         "with -d, -t or --log FILE to keep one)",
         name);
  }
  UniqueFd log(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!log) fail_errno(errno, "container {}: open its log {}", name, path);
  if (!copy_available(log.get()) || !follow) return kExitOk;
  // -f: until the job has ended (its monitor writes the last of a -t job's output before it
  // records the exit), or the container is removed.
  for (;;) {
    auto now = store.try_load(name);
    const bool ended = !now || now->status() == "exited" || now->status() == "dumped" || !launcher::container_alive(*now);
    if (!copy_available(log.get())) return kExitOk;
    if (ended) return kExitOk;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace

void add_logs_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("logs", "Print what a container's job wrote");
  auto name = std::make_shared<std::string>();
  auto follow = std::make_shared<bool>(false);
  cmd->add_option("name", *name, "Container name")->required();
  cmd->add_flag("-f,--follow", *follow, "Go on printing what the job writes until it ends");
  cmd->footer(R"(The job's stdout and stderr are in its log when it runs detached (-d: ROOT/NAME.log), with
--log FILE, or with -t (the monitor copies the terminal's output there, as it is shown: line
ends as \r\n). A job run in the foreground without these wrote to the caller's terminal only.

Examples:
  stasis logs web
  stasis logs -f web
  stasis run -d --name job sh -c 'echo started; sleep 1; echo done' && stasis logs -f job)");
  cmd->callback([&cli, name, follow] { cli.action = [&cli, name, follow]() -> int { return logs(cli, *name, *follow); }; });
}

}  // namespace stasis::cli
