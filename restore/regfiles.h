// Reopening regular files and directories, including files deleted while open ("ghosts":
// recreated at their path with the saved contents, opened, and unlinked again).
#pragma once

#include "common/fd.h"
#include "regfile.pb.h"

namespace stasis::restore {

UniqueFd open_regfile(const pb::RegFile& file);

}  // namespace stasis::restore
