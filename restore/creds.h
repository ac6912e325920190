// Credentials: uids, gids, groups, capabilities, securebits, no_new_privs. Injected into every
// thread last (creds are per thread in the kernel), because once they drop privileges the
// task could no longer do what restore asks of it. Skipped when they equal the restorer's.
#pragma once

#include "core.pb.h"
#include "restore/remote.h"

namespace stasis::restore {

void restore_creds(Remote& thread, const pb::Creds& creds);

}  // namespace stasis::restore
