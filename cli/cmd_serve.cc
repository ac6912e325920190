// `stasis serve --listen ADDR:PORT`: receive migrated containers (transport/migrate.h).
#include "cli/cli.h"
#include "common/error.h"
#include "transport/migrate.h"

namespace stasis::cli {

void add_serve_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("serve", "Receive containers migrated from another host (`stasis migrate`)");
  auto listen = std::make_shared<std::string>();
  auto plaintext = std::make_shared<bool>(false);
  cmd->add_option("--listen", *listen, "Address and port to listen on (ADDR:PORT; port 0: any)")->required();
  cmd->add_flag("--plaintext", *plaintext,
                "Accept migrations without authentication or encryption (trusted networks only; required: no "
                "authenticated mode exists yet)");
  cmd->footer(R"(Runs until stopped. Each migration is staged in ROOT/incoming while it arrives, restored
from there, and removed.

Examples:
  stasis serve --listen 10.0.0.2:7070 --plaintext           (on the destination)
  stasis migrate web --to 10.0.0.2:7070 --plaintext         (on the source))");
  cmd->callback([&cli, listen, plaintext] {
    cli.action = [&cli, listen, plaintext]() -> int {
      if (!*plaintext)
        throw Error("stasis serve: authenticated migration (--key, TLS) is not implemented yet; --plaintext serves "
                    "without it, for a trusted network",
                    kExitNotImplemented);
      transport::ServeOptions o;
      o.listen = *listen;
      o.state_root = cli.global.root;
      return transport::serve(o);
    };
  });
}

}  // namespace stasis::cli
