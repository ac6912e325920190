// `stasis swrk FD`: CRIU's service mode, for runc and podman (docs/criu.md). Not in the main
// help: it is for programs, not people.
#include <cstdlib>
#include <memory>

#include "cli/cli.h"
#include "common/error.h"
#include "criu/swrk.h"

namespace stasis::cli {

void add_swrk_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand(
      "swrk", "Serve CRIU's RPC protocol on FD (runc --criu PATH and podman run `criu swrk FD`; see docs/criu.md)");
  cmd->group("");  // hidden from `stasis --help`
  auto fd = std::make_shared<int>(-1);
  cmd->add_option("fd", *fd, "One end of the client's SOCK_SEQPACKET socket pair")->required();
  cmd->footer(R"x(Examples:
  runc --criu "$(command -v stasis)" checkpoint --leave-running --image-path /var/tmp/ckpt ID
      (runc then runs `stasis swrk 3`))x");
  cmd->callback([&cli, fd] {
    cli.action = [fd]() -> int {
      if (*fd < 0) throw UsageError("stasis swrk FD: FD must be a descriptor number");
      return criu::serve(*fd);
    };
  });
}

}  // namespace stasis::cli
