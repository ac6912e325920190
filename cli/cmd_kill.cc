#include "cli/cli.h"

namespace stasis::cli {

void add_kill_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("kill", "Send a signal to a container's init");
  cmd->callback([&cli] { cli.action = [] () -> int { not_implemented("kill"); }; });
}

}  // namespace stasis::cli
