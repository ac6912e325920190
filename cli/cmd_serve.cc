// `stasis serve --listen ADDR:PORT`: receive migrated containers (transport/migrate.h).
#include "cli/cli.h"
#include "common/error.h"
#include "transport/migrate.h"
#include "transport/wire.h"

namespace stasis::cli {

void add_serve_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("serve", "Receive containers migrated from another host (`stasis migrate`)");
  auto listen = std::make_shared<std::string>();
  auto plaintext = std::make_shared<bool>(false);
  auto key = std::make_shared<std::string>();
  auto tls = std::make_shared<std::array<std::string, 3>>();  // cert, key, CA
  cmd->add_option("--listen", *listen, "Address and port to listen on (ADDR:PORT; port 0: any)")->required();
  cmd->add_option("--key", *key,
                  "Pre-shared key file (the same on both sides, at least 16 bytes): only a client holding it can "
                  "send, and the stream is encrypted and authenticated (AES-256-GCM)");
  cmd->add_option("--tls-cert", (*tls)[0], "TLS instead of a key: our certificate (PEM)");
  cmd->add_option("--tls-key", (*tls)[1], "TLS: our certificate's private key (PEM)");
  cmd->add_option("--tls-ca", (*tls)[2], "TLS: the CA certificates a client's certificate must be signed by (PEM)");
  cmd->add_flag("--plaintext", *plaintext, "Accept migrations without authentication (trusted networks only)");
  cmd->footer(R"(Runs until stopped (SIGTERM: the migrations in progress are dropped). Each migration is
staged in ROOT/incoming while it arrives, restored from there, and removed.

Examples:
  head -c 32 /dev/urandom > /etc/stasis.key                (the same file on both hosts)
  stasis serve --listen 10.0.0.2:7070 --key /etc/stasis.key (on the destination)
  stasis migrate web --to 10.0.0.2:7070 --key /etc/stasis.key
  stasis serve --listen 10.0.0.2:7070 --tls-cert dst.crt --tls-key dst.key --tls-ca ca.crt
  stasis migrate web --to 10.0.0.2:7070 --tls-cert src.crt --tls-key src.key --tls-ca ca.crt
                                                            (TLS: encrypted, certificates checked both ways))");
  cmd->callback([&cli, listen, plaintext, key, tls] {
    cli.action = [&cli, listen, plaintext, key, tls]() -> int {
      transport::ServeOptions o;
      o.tls = transport::tls_files("stasis serve", *tls);
      if (!key->empty() + *plaintext + o.tls.has_value() != 1)
        throw UsageError("stasis serve: give --key FILE (a pre-shared key), --tls-cert/--tls-key/--tls-ca (TLS with "
                         "certificates), or --plaintext to accept migrations without authentication on a trusted "
                         "network (exactly one)");
      if (!key->empty()) o.key = transport::read_key_file(*key);
      o.listen = *listen;
      o.state_root = cli.global.root;
      return transport::serve(o);
    };
  });
}

}  // namespace stasis::cli
