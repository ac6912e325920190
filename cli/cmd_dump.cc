#include "cli/cli.h"

namespace stasis::cli {

void add_dump_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("dump", "Checkpoint a container or a process tree into a directory");
  cmd->callback([&cli] { cli.action = [] () -> int { not_implemented("dump"); }; });
}

}  // namespace stasis::cli
