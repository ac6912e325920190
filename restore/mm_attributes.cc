#include "restore/mm_attributes.h"

#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "common/error.h"

namespace stasis::restore {

void restore_thp_disable(Remote& leader, const pb::MmState& mm) {
  const uint32_t thp = mm.attributes().thp_disable();
  if (!(thp & 1)) return;
  // The flags (PR_THP_DISABLE_EXCEPT_ADVISED, 6.18) are in the bits above the first.
  leader.call_checked("prctl(PR_SET_THP_DISABLE)", SYS_prctl, PR_SET_THP_DISABLE, 1, thp >> 1, 0, 0);
}

void restore_mm_attributes(Remote& leader, const pb::MmState& mm) {
  const pb::MmAttributes& a = mm.attributes();
  if (a.mlockall() != 0) leader.call_checked("mlockall", SYS_mlockall, a.mlockall());
  // In the order of the kernel's commands; each one the dump saw registered.
  for (uint32_t bit = 1; bit != 0 && bit <= a.membarrier(); bit <<= 1) {
    if (!(a.membarrier() & bit)) continue;
    const long rc = leader.call(SYS_membarrier, bit, 0, 0);
    if (rc < 0)
      fail("membarrier registration {:#x} (the job had it): {}", bit, describe_errno(static_cast<int>(-rc)));
  }
}

}  // namespace stasis::restore
