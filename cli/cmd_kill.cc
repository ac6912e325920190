#include "cli/cli.h"
#include "launcher/container.h"

namespace stasis::cli {

void add_kill_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("kill", "Send a signal to a container's PID 1");
  auto name = std::make_shared<std::string>();
  auto signal = std::make_shared<std::string>("TERM");
  cmd->add_option("name", *name, "Container name")->required();
  cmd->add_option("-s,--signal", *signal, "Signal name (TERM, SIGKILL) or number")->capture_default_str();
  cmd->footer(R"(Examples:
  stasis kill web               SIGTERM
  stasis kill -s KILL web
  stasis kill -s USR1 web)");
  cmd->callback([&cli, name, signal] {
    cli.action = [&cli, name, signal]() -> int {
      launcher::kill_container(cli.global.root, *name, launcher::parse_signal(*signal));
      return 0;
    };
  });
}

}  // namespace stasis::cli
