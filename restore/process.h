// Per-process attributes the stub sets on itself before its address space is replaced:
// umask, working and root directory, personality, name, nice, rlimits. Dumpable comes last,
// injected after the credentials (a change of uid resets it).
#pragma once

#include "core.pb.h"
#include "restore/remote.h"

namespace stasis::restore {

void apply_process_attributes(const pb::TaskCore& core);

// Rlimits are applied last: a lower RLIMIT_NOFILE or RLIMIT_AS must not get in the stub's way.
// A hard limit above the restorer's own cannot be raised without CAP_SYS_RESOURCE: it is
// clamped to ours (the restorer warns about it before starting).
void apply_rlimits(const pb::TaskCore& core);

// PR_SET_DUMPABLE, injected into the leader (the flag belongs to the address space).
void restore_dumpable(Remote& leader, const pb::TaskCore& core);

}  // namespace stasis::restore
