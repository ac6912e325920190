// Replacing the stub's address space with the image's, by injected system calls: unmap all of
// the stub but our code page, move the kernel's vDSO/vvar pages where the image had them, map
// every VMA, write the saved pages, set the final protections and the mm fields.
#pragma once

#include "restore/plan.h"
#include "restore/remote.h"

namespace stasis::restore {

struct MemoryStats {
  uint64_t vmas = 0;
  uint64_t pages_written = 0;
  uint64_t bytes_written = 0;
  uint64_t bytes_by_userfaultfd = 0;  // of bytes_written
};

MemoryStats restore_memory(Remote& leader, const RestorePlan& plan);

// The special mappings of this kernel ([vvar], [vvar_vclock], [vdso]) must have the same
// sizes as the image's: the saved code may hold addresses inside them. Throws otherwise.
void check_vdso_compatible(const pb::MmState& mm);

}  // namespace stasis::restore
