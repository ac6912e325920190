#include "cli/cli.h"

namespace stasis::cli {

void add_restore_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("restore", "Restore a checkpoint as a running container");
  cmd->callback([&cli] { cli.action = [] () -> int { not_implemented("restore"); }; });
}

}  // namespace stasis::cli
