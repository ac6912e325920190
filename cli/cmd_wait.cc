// `stasis wait NAME`: waits for the job to end and prints its exit status.
#include <cstdio>

#include "cli/cli.h"
#include "common/error.h"
#include "launcher/container.h"

namespace stasis::cli {

void add_wait_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("wait", "Wait for a container's job to end and print its exit status");
  auto name = std::make_shared<std::string>();
  cmd->add_option("name", *name, "Container name")->required();
  cmd->footer(R"(The status is printed as a shell reports it: the exit code, or 128 + the signal number.
stasis wait itself exits 0 once it has printed it.

Examples:
  stasis wait job1
  code=$(stasis wait job1); echo "job1 ended with $code")");
  cmd->callback([&cli, name] {
    cli.action = [&cli, name]() -> int {
      int status = launcher::wait_container(cli.global.root, *name);
      std::printf("%d\n", status);
      return kExitOk;
    };
  });
}

}  // namespace stasis::cli
