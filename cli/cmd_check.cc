// `stasis check`: probe every kernel feature stasis relies on, one line each (or JSON).
// Exit 0 when every required feature works, 1 otherwise.
#include <cstdio>

#include "cli/cli.h"
#include "common/error.h"
#include "common/features.h"

namespace stasis::cli {

namespace {
struct CheckOptions {
  bool json = false;
};
}  // namespace

void add_check_command(Cli& cli) {
  auto options = std::make_shared<CheckOptions>();
  auto* cmd = cli.app.add_subcommand("check", "Probe the kernel for every feature stasis relies on");
  cmd->add_flag("--json", options->json, "Print machine-readable JSON");
  cmd->footer(R"(Examples:
  stasis check
  stasis check --json)");
  cmd->callback([&cli, options] {
    cli.action = [options]() -> int {
      std::vector<features::FeatureResult> results = features::probe_features();
      bool ok = features::all_required_ok(results);
      if (options->json) {
        std::printf("%s\n", features::to_json(results).c_str());
      } else {
        size_t missing_required = 0, missing_optional = 0;
        for (const auto& r : results) {
          std::printf("%s\n", features::format_line(r).c_str());
          if (!r.ok) ++(r.required ? missing_required : missing_optional);
        }
        std::printf("%s: %zu features, %zu required missing, %zu optional missing\n",
                    ok ? "ok" : "NOT OK", results.size(), missing_required, missing_optional);
      }
      std::fflush(stdout);
      return ok ? kExitOk : kExitFailure;
    };
  });
}

}  // namespace stasis::cli
