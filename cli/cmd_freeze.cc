#include "cli/cli.h"

namespace stasis::cli {

void add_freeze_commands(Cli& cli) {
  auto* freeze = cli.app.add_subcommand("freeze", "Freeze every process of a container");
  freeze->callback([&cli] { cli.action = [] () -> int { not_implemented("freeze"); }; });
  auto* thaw = cli.app.add_subcommand("thaw", "Thaw a frozen container");
  thaw->callback([&cli] { cli.action = [] () -> int { not_implemented("thaw"); }; });
}

}  // namespace stasis::cli
