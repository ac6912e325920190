// The page of ours that restore runs injected system calls from. The stub maps it at an
// address free both in its own layout and in the image's, so it survives the unmapping of the
// stub and the mapping of the target; it is unmapped last (see memory.cc, finish_task()).
//
// Layout:
//   +0     syscall; int3      injection (RemoteSyscall stops at the int3). A thread created by
//                             an injected clone3 is auto-attached (PTRACE_O_TRACECLONE) and
//                             stopped before it runs its first instruction (the int3).
//   +16    a batch of calls   with rbx at a table of entries {nr, six arguments, result} (8
//                             words each) ending with nr -1: makes each call and stores its
//                             result, stops after the first that fails, then traps (int3),
//                             which the restorer takes as the end and drops. One ptrace round
//                             trip for many calls (Remote::call_batch). SIGTRAP is unblocked
//                             and at its default action meanwhile, so that the trap changes no
//                             signal action, and a stub whose restorer died is killed by it.
//   +2048  scratch: arguments passed by pointer (structs, strings, siginfo), or a batch's table
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mm.pb.h"

namespace stasis::restore {

inline constexpr uint64_t kCodePageSize = 4096;
inline constexpr uint64_t kSyscallEntry = 0;
inline constexpr uint64_t kBatchEntry = 16;
inline constexpr uint64_t kBatchEnd = kBatchEntry + 54;  // rip at its trap (after the int3)
inline constexpr uint64_t kScratchOffset = 2048;
inline constexpr uint64_t kScratchSize = kCodePageSize - kScratchOffset;

// Picks a page-aligned address free in /proc/self/maps and in target (with a guard page on
// each side), maps the page there RWX and writes the code. Runs inside the stub.
uint64_t map_code_page(const pb::MmState& target);

}  // namespace stasis::restore
