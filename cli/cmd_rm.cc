#include "cli/cli.h"

namespace stasis::cli {

void add_rm_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("rm", "Remove a container");
  cmd->callback([&cli] { cli.action = [] () -> int { not_implemented("rm"); }; });
}

}  // namespace stasis::cli
