#include "cli/cli.h"

namespace stasis::cli {

void add_exec_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("exec", "Run a command inside a container");
  cmd->callback([&cli] { cli.action = [] () -> int { not_implemented("exec"); }; });
}

}  // namespace stasis::cli
