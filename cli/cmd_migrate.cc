// `stasis migrate NAME --to ADDR:PORT`: move a running container to a host running `stasis
// serve` (transport/migrate.h, docs/migrate.md).
#include "cli/cli.h"
#include "common/error.h"
#include "images/page_file.h"
#include "transport/migrate.h"
#include "transport/wire.h"

namespace stasis::cli {

void add_migrate_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("migrate", "Move a running container to another host (`stasis serve` there)");
  struct Args {
    std::string name, to, compression = "lz4", key;
    std::array<std::string, 3> tls;  // cert, key, CA
    int max_rounds = 8;
    double max_downtime_ms = 0;
    bool plaintext = false;
    bool json = false;
    bool tcp_established = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("name", a->name, "Container to move")->required();
  cmd->add_option("--to", a->to, "Destination: ADDR:PORT of `stasis serve`")->required();
  cmd->add_option("--max-rounds", a->max_rounds, "Most pre-copy rounds before the final stop (0: none, stop-and-copy)")
      ->capture_default_str();
  cmd->add_option("--max-downtime", a->max_downtime_ms,
                  "Downtime goal in ms: pre-copy rounds go on until the last one's pages, at the rate measured, "
                  "would go in this time (or stop shrinking); without it, until a round holds under 8 MiB");
  cmd->add_option("--compress,--compression", a->compression, "Page compression on the wire: none, lz4 or zstd")
      ->capture_default_str();
  cmd->add_option("--key", a->key,
                  "Pre-shared key file (the same as serve's): the destination must prove it holds it, and the "
                  "stream is encrypted and authenticated (AES-256-GCM)");
  cmd->add_option("--tls-cert", a->tls[0], "TLS instead of a key: our certificate (PEM)");
  cmd->add_option("--tls-key", a->tls[1], "TLS: our certificate's private key (PEM)");
  cmd->add_option("--tls-ca", a->tls[2], "TLS: the CA certificates the destination's certificate must be signed by");
  cmd->add_flag("--plaintext", a->plaintext, "Send without authentication (trusted networks only)");
  cmd->add_flag("--tcp-established", a->tcp_established,
                "Move established TCP connections with the job (as dump --tcp-established); the job's address "
                "must reach the destination (a route or a bridge that follows it)");
  cmd->add_flag("--json", a->json, "Progress and figures as JSON, one object a line (round, final, done)");
  cmd->footer(R"(Pre-copies the memory while the container runs (rounds of what it wrote since the last),
then freezes it, sends the rest and its state, and removes it here once the destination runs
it. If anything fails before that, it runs on here.

Examples:
  stasis migrate web --to 10.0.0.2:7070 --key /etc/stasis.key)");
  cmd->callback([&cli, a] {
    cli.action = [&cli, a]() -> int {
      transport::MigrateOptions o;
      o.tls = transport::tls_files("stasis migrate", a->tls);
      if (!a->key.empty() + a->plaintext + o.tls.has_value() != 1)
        throw UsageError("stasis migrate: give --key FILE (a pre-shared key), --tls-cert/--tls-key/--tls-ca (TLS "
                         "with certificates), or --plaintext to send without authentication on a trusted network "
                         "(exactly one)");
      if (a->max_rounds < 0) throw UsageError("--max-rounds: 0 or more (0: stop-and-copy)");
      o.name = a->name;
      o.to = a->to;
      o.state_root = cli.global.root;
      o.max_rounds = a->max_rounds;
      if (a->max_downtime_ms < 0) throw UsageError("--max-downtime: a number of milliseconds, 0 or more");
      o.max_downtime_ms = a->max_downtime_ms;
      o.json = a->json;
      o.tcp_established = a->tcp_established;
      o.compression = images::parse_compression(a->compression);
      if (!a->key.empty()) o.key = transport::read_key_file(a->key);
      return transport::migrate(o);
    };
  });
}

}  // namespace stasis::cli
