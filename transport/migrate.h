// `stasis migrate NAME --to ADDR:PORT` and `stasis serve --listen ADDR:PORT` (docs/migrate.md).
//
// This first version stages: each round is a dump into a temporary folder on the source,
// sent file by file to the destination, which writes it into a temporary folder under its
// state root and restores from there. Pre-copy rounds are `dump --pre-dump` (the job runs on;
// each round after the first holds what the job wrote since the last), until what a round
// holds is small or stops shrinking; then the container is frozen, dumped with the last
// round as parent and left frozen, sent, and restored on the destination. The source is
// removed only once the destination says the job runs; a refusal or failure there thaws the
// source. Authentication: a pre-shared key (--key FILE, transport/wire.h), or none when asked
// for with --plaintext; or TLS with certificates both ways (encrypted).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "images/page_file.h"
#include "transport/wire.h"

namespace stasis::transport {

struct MigrateOptions {
  std::string name;
  std::string to;  // ADDR:PORT
  std::filesystem::path state_root = "/run/stasis";
  int max_rounds = 8;
  uint64_t small_bytes = 8ull << 20;  // without max_downtime_ms: a round holding less is the last
  // --max-downtime: the pre-copy stops once the last round's pages, at the rate measured over
  // the rounds so far, would go in this many ms (0: the small_bytes rule instead).
  double max_downtime_ms = 0;
  images::Compression compression = images::Compression::Lz4;
  std::optional<std::string> key;  // --key: the pre-shared key (transport/wire.h); none: --plaintext
  std::optional<TlsFiles> tls;     // --tls-cert/--tls-key/--tls-ca instead of a key
  bool json = false;               // one JSON object a line (round, final, done) instead of text
  // Established TCP connections go with the job (dump --tcp-established); here they stay held
  // by the network lock until the job is removed, or released if it runs on here.
  bool tcp_established = false;
};
int migrate(const MigrateOptions& options);

struct ServeOptions {
  std::string listen;  // ADDR:PORT (port 0: any; the port is printed)
  std::filesystem::path state_root = "/run/stasis";
  std::optional<std::string> key;
  std::optional<TlsFiles> tls;
};
// Runs until killed; one thread per connection.
int serve(const ServeOptions& options);

}  // namespace stasis::transport
