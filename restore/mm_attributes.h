// mm-wide attributes (MmAttributes of mm-<pid>.img), injected into the leader: transparent
// huge pages disabled before memory is filled (no huge page is made on the way), then once
// every mapping is in place mlockall(MCL_FUTURE) (earlier it would lock them all) and the
// membarrier registrations.
#pragma once

#include "mm.pb.h"
#include "restore/remote.h"

namespace stasis::restore {

// Before the job's mappings are made.
void restore_thp_disable(Remote& leader, const pb::MmState& mm);
// After every mapping is made and filled.
void restore_mm_attributes(Remote& leader, const pb::MmState& mm);

}  // namespace stasis::restore
