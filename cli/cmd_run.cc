#include "cli/cli.h"

namespace stasis::cli {

void add_run_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("run", "Start a job in fresh namespaces and a cgroup");
  cmd->callback([&cli] { cli.action = [] () -> int { not_implemented("run"); }; });
}

}  // namespace stasis::cli
