#include "cli/cli.h"
#include "launcher/container.h"

namespace stasis::cli {

void add_rm_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("rm", "Remove a container: its cgroup, network links and state");
  auto names = std::make_shared<std::vector<std::string>>();
  auto force = std::make_shared<bool>(false);
  cmd->add_flag("-f,--force", *force, "Kill it first if it is running");
  cmd->add_option("name", *names, "Container names")->required();
  cmd->callback([&cli, names, force] {
    cli.action = [&cli, names, force]() -> int {
      for (const auto& name : *names) launcher::remove_container(cli.global.root, name, *force);
      return 0;
    };
  });
}

}  // namespace stasis::cli
