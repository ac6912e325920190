#include "cli/cli.h"

namespace stasis::cli {

void add_migrate_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("migrate", "Move a running container to another host (not implemented yet)");
  cmd->footer(R"(Not implemented yet: it exits with status 3. Meanwhile a container moves to another
host with a dump, a copy of the checkpoint folder, and a restore there.

Examples:
  stasis dump web -D /tmp/web              (on this host)
  rsync -a /tmp/web other:/tmp/
  ssh other stasis restore -D /tmp/web)");
  cmd->callback([&cli] { cli.action = [] () -> int { not_implemented("migrate"); }; });
}

}  // namespace stasis::cli
