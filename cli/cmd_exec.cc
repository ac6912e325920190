#include "cli/cli.h"
#include "launcher/container.h"

namespace stasis::cli {

void add_exec_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("exec", "Run a command inside a container");
  auto name = std::make_shared<std::string>();
  auto command = std::make_shared<std::vector<std::string>>();
  cmd->add_option("name", *name, "Container name")->required();
  cmd->add_option("command", *command, "CMD [ARGS...]: the command and its arguments");
  cmd->footer(R"(Options end at the command's first word; a "--" before it is optional.

Examples:
  stasis exec web ps aux
  stasis exec web -- sh -c 'cat /proc/1/status')");
  cmd->callback([&cli, name, command] {
    cli.action = [&cli, name, command]() -> int { return launcher::exec_in_container(cli.global.root, *name, *command); };
  });
}

}  // namespace stasis::cli
