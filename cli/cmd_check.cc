#include "cli/cli.h"

namespace stasis::cli {

void add_check_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("check", "Probe the kernel for every feature stasis relies on");
  cmd->callback([&cli] { cli.action = [] () -> int { not_implemented("check"); }; });
}

}  // namespace stasis::cli
