// `stasis rm NAME...`: removes each container it can and reports each it cannot.
#include "cli/cli.h"
#include "common/error.h"
#include "common/log.h"
#include "launcher/container.h"

namespace stasis::cli {

void add_rm_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("rm", "Remove containers: their cgroup, network links and state");
  auto names = std::make_shared<std::vector<std::string>>();
  auto force = std::make_shared<bool>(false);
  cmd->add_flag("-f,--force", *force, "Kill it first if it is running");
  cmd->add_option("name", *names, "Container names")->required();
  cmd->footer(R"(Every name is tried; each that cannot be removed is reported, and the exit code is 1
if any could not.

Examples:
  stasis rm job1 job2         remove two ended containers
  stasis rm -f web            kill it first if it still runs)");
  cmd->callback([&cli, names, force] {
    cli.action = [&cli, names, force]() -> int {
      int code = kExitOk;
      for (const auto& name : *names) {
        try {
          launcher::remove_container(cli.global.root, name, *force);
        } catch (const Error& e) {
          log::error("{}", e.what());
          code = kExitFailure;
        }
      }
      return code;
    };
  });
}

}  // namespace stasis::cli
