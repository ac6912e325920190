#include "cli/cli.h"
#include "launcher/container.h"

namespace stasis::cli {

void add_freeze_commands(Cli& cli) {
  auto* freeze = cli.app.add_subcommand("freeze", "Freeze every process of a container");
  auto freeze_name = std::make_shared<std::string>();
  freeze->add_option("name", *freeze_name, "Container name")->required();
  freeze->footer(R"(Examples:
  stasis freeze web
  stasis freeze web && stasis thaw web)");
  freeze->callback([&cli, freeze_name] {
    cli.action = [&cli, freeze_name]() -> int {
      launcher::freeze_container(cli.global.root, *freeze_name);
      return 0;
    };
  });
  auto* thaw = cli.app.add_subcommand("thaw", "Thaw a frozen container");
  auto thaw_name = std::make_shared<std::string>();
  thaw->add_option("name", *thaw_name, "Container name")->required();
  thaw->footer(R"(Examples:
  stasis thaw web
  stasis freeze web && stasis dump web -D /tmp/web --leave-running && stasis thaw web)");
  thaw->callback([&cli, thaw_name] {
    cli.action = [&cli, thaw_name]() -> int {
      launcher::thaw_container(cli.global.root, *thaw_name);
      return 0;
    };
  });
}

}  // namespace stasis::cli
