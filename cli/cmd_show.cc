#include "cli/cli.h"

namespace stasis::cli {

void add_show_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("show", "Print a checkpoint as JSON");
  cmd->callback([&cli] { cli.action = [] () -> int { not_implemented("show"); }; });
}

}  // namespace stasis::cli
