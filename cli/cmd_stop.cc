// `stasis stop NAME... [-t SECONDS]`: SIGTERM, then SIGKILL after the grace period.
#include <cmath>

#include "cli/cli.h"
#include "common/error.h"
#include "common/log.h"
#include "launcher/container.h"

namespace stasis::cli {

void add_stop_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("stop", "Stop a container: SIGTERM to its PID 1, SIGKILL after a grace period");
  auto names = std::make_shared<std::vector<std::string>>();
  auto timeout = std::make_shared<double>(10);
  cmd->add_option("name", *names, "Container names")->required();
  cmd->add_option("-t,--time", *timeout, "Seconds to wait after SIGTERM before SIGKILL")->capture_default_str();
  cmd->footer(R"(Examples:
  stasis stop web             SIGTERM; SIGKILL after 10 s if it still runs
  stasis stop -t 0 web        SIGKILL at once
  stasis stop -t 30 a b       stop two containers, 30 s grace each)");
  cmd->callback([&cli, names, timeout] {
    cli.action = [&cli, names, timeout]() -> int {
      if (!(*timeout >= 0) || std::isinf(*timeout)) throw UsageError("-t: expected a number of seconds, 0 or more");
      auto grace = std::chrono::milliseconds(static_cast<int64_t>(*timeout * 1000));
      int code = kExitOk;
      for (const auto& name : *names) {
        try {
          launcher::stop_container(cli.global.root, name, grace);
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
