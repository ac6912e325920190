#include "cli/cli.h"

namespace stasis::cli {

void add_migrate_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("migrate", "Move a running container to another host");
  cmd->callback([&cli] { cli.action = [] () -> int { not_implemented("migrate"); }; });
}

}  // namespace stasis::cli
