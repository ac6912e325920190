// What kind of memory a saved VMA (pb::Vma) is, as dump and restore both ask.
#pragma once

#include "mm.pb.h"

namespace stasis::images {

// Mapped from a file, privately or shared.
inline bool is_file_backed(pb::Vma::Kind kind) { return kind == pb::Vma::FILE_PRIVATE || kind == pb::Vma::FILE_SHARED; }

// Anonymous memory of this process alone: heap, stack and private anonymous mappings.
inline bool is_private_anonymous(pb::Vma::Kind kind) {
  return kind == pb::Vma::ANON_PRIVATE || kind == pb::Vma::HEAP || kind == pb::Vma::STACK;
}

// The kernel's own mappings ([vdso], [vvar], [vvar_vclock], [vsyscall]): no page of the job's
// is in them, and restore never maps them itself.
inline bool is_kernel_mapping(pb::Vma::Kind kind) {
  return kind == pb::Vma::VDSO || kind == pb::Vma::VVAR || kind == pb::Vma::VVAR_VCLOCK || kind == pb::Vma::VSYSCALL;
}

}  // namespace stasis::images
