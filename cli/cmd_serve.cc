#include "cli/cli.h"

namespace stasis::cli {

void add_serve_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("serve", "Receive migrated containers over TCP");
  cmd->callback([&cli] { cli.action = [] () -> int { not_implemented("serve"); }; });
}

}  // namespace stasis::cli
