// stasis run under the name `criu` (a link that `cmake --install` adds with
// -DSTASIS_INSTALL_CRIU_LINK=ON): podman, CRI-O and runc 1.2+ look `criu` up on PATH and run
// `criu swrk N`, `criu --version` or `criu check`, which get CRIU's answers (docs/criu.md).
#pragma once

#include <optional>

namespace stasis::criu {

// The exit status when argv[0] is criu (whatever the command), else nullopt.
std::optional<int> run_as_criu(int argc, char** argv);

}  // namespace stasis::criu
