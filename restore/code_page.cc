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

constexpr uint8_t kSyscallCode[] = {0x0f, 0x05, 0xcc};  // syscall; int3

// The batch loop (code_page.h), x86-64. Offsets from kBatchEntry on the left.
constexpr uint8_t kBatchCode[] = {
    0x48, 0x8b, 0x03,                    //  0 loop: mov rax, [rbx]
    0x48, 0x83, 0xf8, 0xff,              //  3       cmp rax, -1
    0x74, 0x2c,                          //  7       je done
    0x48, 0x8b, 0x7b, 0x08,              //  9       mov rdi, [rbx+8]
    0x48, 0x8b, 0x73, 0x10,              // 13       mov rsi, [rbx+16]
    0x48, 0x8b, 0x53, 0x18,              // 17       mov rdx, [rbx+24]
    0x4c, 0x8b, 0x53, 0x20,              // 21       mov r10, [rbx+32]
    0x4c, 0x8b, 0x43, 0x28,              // 25       mov r8, [rbx+40]
    0x4c, 0x8b, 0x4b, 0x30,              // 29       mov r9, [rbx+48]
    0x0f, 0x05,                          // 33       syscall
    0x48, 0x89, 0x43, 0x38,              // 35       mov [rbx+56], rax
    0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff,  // 39       cmp rax, -4095
    0x73, 0x06,                          // 45       jae done (unsigned: -4095..-1 failed)
    0x48, 0x83, 0xc3, 0x40,              // 47       add rbx, 64
    0xeb, 0xcb,                          // 51       jmp loop
    0xcc,                                // 53 done: int3
    0xcc,                                // 54       int3 (the restorer never lets it run on)
};
static_assert(kBatchEntry + 54 == kBatchEnd && sizeof kBatchCode == 55);
static_assert(kBatchEntry >= sizeof kSyscallCode && kBatchEntry + sizeof kBatchCode <= kScratchOffset);

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
    std::memcpy(static_cast<char*>(p) + kSyscallEntry, kSyscallCode, sizeof kSyscallCode);
    std::memcpy(static_cast<char*>(p) + kBatchEntry, kBatchCode, sizeof kBatchCode);
    return addr;
  }
  fail("no free address for the restore code page");
}

}  // namespace stasis::restore
