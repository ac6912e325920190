#include "restore/code_page.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/error.h"
#include "common/proc.h"

namespace stasis::restore {
namespace {

using Range = std::pair<uint64_t, uint64_t>;

std::vector<Range> own_mappings() {
  std::vector<Range> out;
  for (const auto& m : proc::read_maps(0)) out.emplace_back(m.start, m.end);
  return out;
}

constexpr uint8_t kCode[] = {0x0f, 0x05, 0xcc};  // syscall; int3

}  // namespace

uint64_t map_code_page(const pb::MmState& target) {
  std::vector<Range> busy = own_mappings();
  for (const auto& vma : target.vmas()) busy.emplace_back(vma.start(), vma.end());
  // Stacks grow down into their guard gap; keep well away from every mapping.
  constexpr uint64_t kGap = 1 << 20;
  auto is_free = [&](uint64_t addr) {
    for (const auto& [s, e] : busy)
      if (addr + kCodePageSize + kGap > s && addr < e + kGap) return false;
    return true;
  };
  // Search low addresses first: they are rarely used by the target or by us.
  for (uint64_t addr = 1ull << 30; addr < (1ull << 46); addr += 2ull << 20) {
    if (!is_free(addr)) continue;
    void* p = mmap(reinterpret_cast<void*>(addr), kCodePageSize, PROT_READ | PROT_WRITE | PROT_EXEC,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) {
      if (errno == EEXIST) continue;
      fail_errno(errno, "map the restore code page at {:#x}", addr);
    }
    std::memcpy(p, kCode, sizeof kCode);
    return addr;
  }
  fail("no free address for the restore code page");
}

}  // namespace stasis::restore
