#include "restore/memory.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "common/compat.h"
#include "common/error.h"
#include "common/proc.h"
#include "common/log.h"
#include "images/vma_kind.h"
#include "restore/ipc.h"
#include "restore/mm_attributes.h"
#include "restore/page_fill.h"

namespace stasis::restore {
namespace {

bool is_special_name(const std::string& name) {
  return name == "[vdso]" || name == "[vvar]" || name == "[vvar_vclock]" || name == "[vsyscall]";
}

std::string special_name(pb::Vma::Kind kind) {
  switch (kind) {
    case pb::Vma::VDSO: return "[vdso]";
    case pb::Vma::VVAR: return "[vvar]";
    case pb::Vma::VVAR_VCLOCK: return "[vvar_vclock]";
    default: return "";
  }
}

bool is_movable_special(pb::Vma::Kind kind) {
  return kind == pb::Vma::VDSO || kind == pb::Vma::VVAR || kind == pb::Vma::VVAR_VCLOCK;
}

using images::is_file_backed;

void unmap_stub(Remote& r) {
  std::vector<Remote::BatchCall> calls;
  for (const auto& m : proc::read_maps(r.host_pid())) {
    if (m.start == r.code_page() || is_special_name(m.path)) continue;
    calls.push_back({"munmap", SYS_munmap, {m.start, m.end - m.start}});
  }
  r.call_batch_checked(calls);
}

// Moves [vvar], [vvar_vclock] and [vdso] to where the image had them. They go through a
// parking area first when the new places overlap the current ones.
void move_special_mappings(Remote& r, const pb::MmState& mm) {
  std::map<std::string, proc::MapEntry> current;
  for (const auto& m : proc::read_maps(r.host_pid()))
    if (is_special_name(m.path) && m.path != "[vsyscall]") current[m.path] = m;

  std::vector<std::pair<proc::MapEntry, uint64_t>> moves;  // current mapping -> target start
  for (const auto& vma : mm.vmas()) {
    if (!is_movable_special(vma.kind())) continue;
    auto it = current.find(special_name(vma.kind()));
    if (it == current.end()) fail("the image has {} but this kernel gives none", special_name(vma.kind()));
    moves.emplace_back(it->second, vma.start());
    current.erase(it);
  }
  // What the image did not have is not wanted.
  for (const auto& [name, m] : current) r.call_checked("munmap " + name, SYS_munmap, m.start, m.end - m.start);

  auto overlaps_any_current = [&](uint64_t start, uint64_t len) {
    for (const auto& [m, target] : moves)
      if (start < m.end && m.start < start + len) return true;
    return false;
  };
  bool park = false;
  for (const auto& [m, target] : moves)
    if (target != m.start && overlaps_any_current(target, m.end - m.start)) park = true;
  if (park) {
    // Park right above the code page, which the stub chose far from the image's VMAs.
    uint64_t spot = r.code_page() + (64ull << 20);
    for (auto& [m, target] : moves) {
      const uint64_t len = m.end - m.start;
      r.call_checked("mremap " + m.path + " (park)", SYS_mremap, m.start, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, spot);
      m.end = spot + len;
      m.start = spot;
      spot += len + (1 << 20);
    }
  }
  for (const auto& [m, target] : moves) {
    if (m.start == target) continue;
    const uint64_t len = m.end - m.start;
    r.call_checked("mremap " + m.path, SYS_mremap, m.start, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, target);
  }
}

int map_flags(const pb::Vma& vma) {
  int flags = MAP_FIXED;
  flags |= (vma.kind() == pb::Vma::ANON_SHARED || vma.kind() == pb::Vma::FILE_SHARED) ? MAP_SHARED : MAP_PRIVATE;
  if (!is_file_backed(vma.kind()) && vma.memfd_name().empty()) flags |= MAP_ANONYMOUS;
  if (vma.flags() & MAP_GROWSDOWN) flags |= MAP_GROWSDOWN;
  // Huge sparse reservations (sanitizer shadows, JIT heaps) were made without swap
  // accounting; without it they fail with ENOMEM.
  for (const auto& flag : vma.vm_flags())
    if (flag == "nr") flags |= MAP_NORESERVE;
  return flags;
}

// Pages are written with process_vm_writev, which honours protections (and UFFDIO_COPY): dumped
// VMAs are mapped writable first and get their real protection afterwards.
uint32_t initial_prot(const pb::Vma& vma) {
  return vma.dumped() ? (vma.prot() | PROT_READ | PROT_WRITE) : vma.prot();
}

// The VM flags of smaps that a call can set again: madvise advice, mlock ("lo", with "lf" when
// locked on fault: then only the pages that were saved are brought in) and, last, mseal ("sl").
// The calls that give vma its flags, queued on calls.
void apply_vm_flags(const pb::Vma& vma, std::vector<Remote::BatchCall>& calls) {
  struct Advice {
    std::string_view flag;
    int advice;
    std::string_view call;  // for errors
  };
  static constexpr Advice kAdvice[] = {
      {"dc", MADV_DONTFORK, "madvise(MADV_DONTFORK)"},   {"dd", MADV_DONTDUMP, "madvise(MADV_DONTDUMP)"},
      {"wf", MADV_WIPEONFORK, "madvise(MADV_WIPEONFORK)"}, {"hg", MADV_HUGEPAGE, "madvise(MADV_HUGEPAGE)"},
      {"nh", MADV_NOHUGEPAGE, "madvise(MADV_NOHUGEPAGE)"}, {"mg", MADV_MERGEABLE, "madvise(MADV_MERGEABLE)"},
      {"rr", MADV_RANDOM, "madvise(MADV_RANDOM)"},       {"sr", MADV_SEQUENTIAL, "madvise(MADV_SEQUENTIAL)"},
  };
  const uint64_t len = vma.end() - vma.start();
  bool sealed = false, locked = false, on_fault = false;
  for (const auto& flag : vma.vm_flags()) {
    if (flag == "lo") locked = true;
    else if (flag == "lf") on_fault = true;
    else if (flag == "sl") sealed = true;
    for (const Advice& a : kAdvice)
      if (flag == a.flag) calls.push_back({a.call, SYS_madvise, {vma.start(), len, static_cast<uint64_t>(a.advice)}});
  }
  if (locked) calls.push_back({"mlock2", SYS_mlock2, {vma.start(), len, on_fault ? MLOCK_ONFAULT : 0u}});
  if (sealed) calls.push_back({"mseal", __NR_mseal, {vma.start(), len, 0}});
}

// struct prctl_mm_map from <linux/prctl.h>, with the auxv stored right after it.
struct MmMap {
  uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack, arg_start, arg_end, env_start,
      env_end;
  uint64_t auxv;
  uint32_t auxv_size;
  uint32_t exe_fd;
};

void set_mm_fields(Remote& r, const RestorePlan& plan) {
  const pb::MmState& mm = plan.task.mm;
  MmMap map{mm.start_code(), mm.end_code(), mm.start_data(), mm.end_data(), mm.start_brk(), mm.brk(),
            mm.start_stack(), mm.arg_start(), mm.arg_end(), mm.env_start(), mm.env_end(), 0,
            static_cast<uint32_t>(mm.auxv().size()), static_cast<uint32_t>(plan.exe_fd())};
  r.reset_scratch();
  uint64_t auxv = r.append_scratch(mm.auxv().data(), mm.auxv().size());
  map.auxv = auxv;
  uint64_t addr = r.append_scratch(&map, sizeof map);
  r.call_checked("prctl(PR_SET_MM_MAP)", SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, addr, sizeof map);
}

}  // namespace

void check_vdso_compatible(const pb::MmState& mm) {
  std::map<std::string, uint64_t> ours;
  for (const auto& m : proc::read_maps(getpid()))
    if (is_special_name(m.path)) ours[m.path] = m.end - m.start;
  for (const auto& vma : mm.vmas()) {
    if (!is_movable_special(vma.kind())) continue;
    const std::string name = special_name(vma.kind());
    auto it = ours.find(name);
    if (it == ours.end())
      fail("the image has a {} mapping but this kernel has none: its vDSO layout differs", name);
    if (it->second != vma.end() - vma.start())
      fail("the image's {} is {} bytes, this kernel's is {}: its vDSO differs from the image's", name,
           vma.end() - vma.start(), it->second);
    ours.erase(it);
  }
  for (const auto& [name, size] : ours)
    if (name != "[vsyscall]") fail("this kernel has a {} mapping the image lacks: its vDSO layout differs", name);
}

MemoryStats restore_memory(Remote& r, const RestorePlan& plan) {
  MemoryStats stats;
  unmap_stub(r);
  move_special_mappings(r, plan.task.mm);
  restore_thp_disable(r, plan.task.mm);
  // The mappings in batches (one round trip each), SysV segments between them.
  std::vector<Remote::BatchCall> maps;
  std::vector<const pb::Vma*> mapped;
  auto map_queued = [&] {
    const std::vector<long> results = r.call_batch(maps);
    for (size_t i = 0; i < maps.size(); ++i) {
      const pb::Vma& vma = *mapped[i];
      const long rc = results[i];
      if (rc == Remote::kNotRun) continue;  // after the one that failed
      if (rc < 0 || static_cast<uint64_t>(rc) != vma.start())
        fail("pid {}: map {:#x}-{:#x} ({}{}): {}", plan.task.pid(), vma.start(), vma.end(), vma.name(), vma.path(),
             rc < 0 ? describe_errno(static_cast<int>(-rc)) : fmt::format("mapped at {:#x} instead", rc));
    }
    maps.clear();
    mapped.clear();
  };
  for (const auto& vma : plan.task.mm.vmas()) {
    if (images::is_kernel_mapping(vma.kind())) continue;
    if (vma.sysv_shm()) {
      map_queued();
      attach_segment(r, vma);  // restore/ipc.cc
      ++stats.vmas;
      continue;
    }
    const uint64_t len = vma.end() - vma.start();
    int fd = -1;
    if (is_file_backed(vma.kind())) fd = plan.mapped_file_fd(static_cast<size_t>(plan.path_fd_index(vma.path())));
    if (!vma.memfd_name().empty()) fd = plan.mapped_file_fd(static_cast<size_t>(plan.memfd_index(vma.shmem_id())));
    int flags = map_flags(vma);
    if (vma.kind() == pb::Vma::ANON_SHARED && vma.memfd_name().empty()) {
      // Shared with another process or VMA of the tree: the one object, through its fd.
      const int shared = plan.anon_shared_index(vma.shmem_id());
      if (shared >= 0) {
        fd = plan.mapped_file_fd(static_cast<size_t>(shared));
        flags &= ~MAP_ANONYMOUS;
      }
    }
    maps.push_back({"mmap", SYS_mmap,
                    {vma.start(), len, static_cast<uint64_t>(initial_prot(vma)), static_cast<uint64_t>(flags),
                     static_cast<uint64_t>(static_cast<int64_t>(fd)), vma.pgoff()}});
    mapped.push_back(&vma);
    ++stats.vmas;
  }
  map_queued();
  FillStats filled = fill_pages(r, plan);
  stats.pages_written = filled.pages;
  stats.bytes_written = filled.bytes;
  stats.bytes_by_userfaultfd = filled.bytes_by_userfaultfd;
  std::vector<Remote::BatchCall> finish;
  for (const auto& vma : plan.task.mm.vmas()) {
    if (images::is_kernel_mapping(vma.kind())) continue;
    if (initial_prot(vma) != vma.prot())
      finish.push_back({"mprotect", SYS_mprotect, {vma.start(), vma.end() - vma.start(), vma.prot()}});
    // Guard regions after the pages are in (installing one drops what is there), before mlock.
    for (const auto& g : vma.guards())
      finish.push_back({"madvise(MADV_GUARD_INSTALL)", SYS_madvise, {g.start(), g.end() - g.start(), MADV_GUARD_INSTALL}});
    apply_vm_flags(vma, finish);
  }
  r.call_batch_checked(finish);
  set_mm_fields(r, plan);
  for (size_t i = 0; i < plan.mapped_files.size(); ++i) r.call(SYS_close, plan.mapped_file_fd(i));
  restore_mm_attributes(r, plan.task.mm);
  log::debug("pid {}: {} VMAs mapped, {} pages written ({} MiB through userfaultfd)", plan.task.pid(), stats.vmas,
             stats.pages_written, stats.bytes_by_userfaultfd >> 20);
  return stats;
}

}  // namespace stasis::restore
