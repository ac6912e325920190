#include "cli/cli.h"

namespace stasis::cli {

void add_ps_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("ps", "List containers");
  cmd->callback([&cli] { cli.action = [] () -> int { not_implemented("ps"); }; });
}

}  // namespace stasis::cli
