#include "criu/as_criu.h"

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "common/error.h"
#include "common/features.h"
#include "common/log.h"
#include "common/version.h"
#include "criu/requests.h"
#include "criu/swrk.h"

namespace stasis::criu {

namespace {

int usage(std::string_view what) {
  std::fprintf(stderr,
               "criu: %.*s: this criu is stasis %.*s, which stands in for CRIU only as `criu swrk FD`, `criu check` "
               "and `criu --version` (the commands runc, podman and CRI-O use); run stasis itself for the rest\n",
               static_cast<int>(what.size()), what.data(), static_cast<int>(kVersion.size()), kVersion.data());
  return kExitUsage;
}

int check(int argc, char** argv) {
  if (argc > 2) {
    // `criu check --feature NAME`: the optional features CRIU reports are the ones we lack
    // (memory tracking, lazy pages, ...): say so for each rather than guess.
    std::string_view a = argv[2];
    if (a == "--feature" && argc == 4) {
      std::fprintf(stderr, "criu check: feature %s is not supported by stasis\n", argv[3]);
      return kExitFailure;
    }
    if (a != "--all" && a != "--extra" && a != "--experimental") return usage(std::string("check ") + argv[2]);
  }
  bool ok = true;
  for (const auto& r : features::probe_features()) {
    if (!r.required || r.ok) continue;
    std::fprintf(stderr, "%s\n", features::format_line(r).c_str());
    ok = false;
  }
  if (ok) std::printf("Looks good.\n");
  return ok ? kExitOk : kExitFailure;
}

}  // namespace

std::optional<int> run_as_criu(int argc, char** argv) {
  std::string_view name = argc > 0 && argv[0] ? argv[0] : "";
  if (size_t slash = name.rfind('/'); slash != std::string_view::npos) name.remove_prefix(slash + 1);
  if (name != "criu") return std::nullopt;
  std::string_view command = argc > 1 ? argv[1] : "";
  try {
    if (command == "--version" || command == "-V") {
      std::printf("Version: %d.%d\n", kCriuMajor, kCriuMinor);
      std::printf("(stasis %.*s, speaking CRIU's RPC protocol)\n", static_cast<int>(kVersion.size()), kVersion.data());
      return kExitOk;
    }
    if (command == "swrk") {
      if (argc != 3) return usage("swrk takes one argument, the socket's descriptor number");
      char* end = nullptr;
      long fd = std::strtol(argv[2], &end, 10);
      if (!*argv[2] || *end || fd < 0 || fd > 1 << 20) return usage(std::string("swrk ") + argv[2]);
      return serve(static_cast<int>(fd));
    }
    if (command == "check") return check(argc, argv);
    return usage(command.empty() ? "no command" : std::string(command));
  } catch (const Error& e) {
    log::error("{}", e.what());
    return e.exit_code();
  }
}

}  // namespace stasis::criu
