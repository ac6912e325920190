// `stasis migrate NAME --to ADDR:PORT`: move a running container to a host running `stasis
// serve` (transport/migrate.h, docs/migrate.md).
#include "cli/cli.h"
#include "common/error.h"
#include "images/page_file.h"
#include "transport/migrate.h"

namespace stasis::cli {

void add_migrate_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("migrate", "Move a running container to another host (`stasis serve` there)");
  struct Args {
    std::string name, to, compression = "lz4";
    int max_rounds = 8;
    bool plaintext = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("name", a->name, "Container to move")->required();
  cmd->add_option("--to", a->to, "Destination: ADDR:PORT of `stasis serve`")->required();
  cmd->add_option("--max-rounds", a->max_rounds, "Most pre-copy rounds before the final stop")->capture_default_str();
  cmd->add_option("--compress,--compression", a->compression, "Page compression: none, lz4 or zstd")
      ->capture_default_str();
  cmd->add_flag("--plaintext", a->plaintext,
                "Send without authentication or encryption (trusted networks only; required: no authenticated mode "
                "exists yet)");
  cmd->footer(R"(Pre-copies the memory while the container runs (rounds of what it wrote since the last),
then freezes it, sends the rest and its state, and removes it here once the destination runs
it. If anything fails before that, it runs on here.

Examples:
  stasis migrate web --to 10.0.0.2:7070 --plaintext)");
  cmd->callback([&cli, a] {
    cli.action = [&cli, a]() -> int {
      if (!a->plaintext)
        throw Error("stasis migrate: authenticated migration (--key, TLS) is not implemented yet; --plaintext sends "
                    "without it, for a trusted network",
                    kExitNotImplemented);
      if (a->max_rounds < 1) throw UsageError("--max-rounds: at least 1");
      transport::MigrateOptions o;
      o.name = a->name;
      o.to = a->to;
      o.state_root = cli.global.root;
      o.max_rounds = a->max_rounds;
      o.compression = images::parse_compression(a->compression);
      return transport::migrate(o);
    };
  });
}

}  // namespace stasis::cli
