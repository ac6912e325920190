#include "restore/plan.h"

#include <algorithm>

#include "common/error.h"
#include "restore/files.h"

namespace stasis::restore {

int RestorePlan::path_fd_index(const std::string& path) const {
  for (size_t i = 0; i < mapped_files.size(); ++i)
    if (mapped_files[i].path == path) return static_cast<int>(i);
  fail("mapped file {} is not in the restore plan", path);
}

RestorePlan make_plan(const std::filesystem::path& dir, TaskImage task, FileImages files) {
  RestorePlan plan;
  plan.dir = dir;
  plan.task = std::move(task);
  plan.files = std::move(files);
  for (const auto& vma : plan.task.mm.vmas()) {
    if (vma.kind() != pb::Vma::FILE_PRIVATE && vma.kind() != pb::Vma::FILE_SHARED) continue;
    auto it = std::find_if(plan.mapped_files.begin(), plan.mapped_files.end(),
                           [&](const MappedFile& f) { return f.path == vma.path(); });
    if (it == plan.mapped_files.end()) {
      plan.mapped_files.push_back({vma.path(), vma.file(), false});
      it = plan.mapped_files.end() - 1;
    }
    if (vma.kind() == pb::Vma::FILE_SHARED && (vma.prot() & 0x2 /*PROT_WRITE*/)) it->writable = true;
  }
  plan.mapped_files.push_back({plan.task.mm.exe_path(), plan.task.mm.exe_file(), false});
  plan.high_fd_base = std::max(max_fd(plan.task.fds) + 1, 10);
  return plan;
}

}  // namespace stasis::restore
