// mm-wide attributes (MmAttributes in mm-<pid>.img) that only the task can tell, asked with
// injected calls while the scratch page is mapped: transparent huge pages disabled
// (PR_GET_THP_DISABLE), mlockall(MCL_FUTURE) and membarrier registrations.
#pragma once

#include "dump/inject.h"
#include "dump/task.h"
#include "mm.pb.h"

namespace stasis::dump {

pb::MmAttributes collect_mm_attributes(Task& task, Injector& injector);

}  // namespace stasis::dump
