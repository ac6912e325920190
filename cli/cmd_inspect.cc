// `stasis inspect NAME`: the container's full state as one JSON object (as `ps --format json`).
#include <cstdio>

#include "cli/cli.h"
#include "launcher/container.h"
#include "launcher/state_store.h"

namespace stasis::cli {

void add_inspect_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("inspect", "Print the full state of a container as JSON");
  auto name = std::make_shared<std::string>();
  cmd->add_option("name", *name, "Container name")->required();
  cmd->footer(R"(The object has the same shape as each entry of `stasis ps --format json`: name and
display_status at the top, the configuration under config.

Examples:
  stasis inspect web
  stasis inspect web | python3 -c 'import json,sys; print(json.load(sys.stdin)["init_pid"])')");
  cmd->callback([&cli, name] {
    cli.action = [&cli, name]() -> int {
      launcher::StateStore store(cli.global.root);
      std::string json = launcher::state_to_json(launcher::state_for_display(store.load(*name)));
      while (!json.empty() && json.back() == '\n') json.pop_back();
      std::printf("%s\n", json.c_str());
      return kExitOk;
    };
  });
}

}  // namespace stasis::cli
