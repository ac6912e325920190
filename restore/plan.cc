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

int RestorePlan::memfd_index(uint64_t shmem_id) const {
  for (size_t i = 0; i < mapped_files.size(); ++i)
    if (mapped_files[i].memfd && mapped_files[i].shmem_id == shmem_id) return static_cast<int>(i);
  fail("mapped memfd (inode {}) is not in the restore plan", shmem_id);
}

int RestorePlan::anon_shared_index(uint64_t shmem_id) const {
  for (size_t i = 0; i < mapped_files.size(); ++i)
    if (mapped_files[i].anon_shared && mapped_files[i].shmem_id == shmem_id) return static_cast<int>(i);
  return -1;
}

RestorePlan make_plan(const std::filesystem::path& dir, TaskImage task, FileImages files) {
  RestorePlan plan;
  plan.dir = dir;
  plan.task = std::move(task);
  plan.files = std::move(files);
  for (const auto& vma : plan.task.mm.vmas()) {
    if (!vma.memfd_name().empty()) {
      const bool known = std::any_of(plan.mapped_files.begin(), plan.mapped_files.end(),
                                     [&](const MappedFile& f) { return f.memfd && f.shmem_id == vma.shmem_id(); });
      if (!known) {
        MappedFile f;
        f.path = "/memfd:" + vma.memfd_name();
        f.writable = true;
        f.memfd = true;
        f.memfd_name = vma.memfd_name();
        f.memfd_size = vma.memfd_size();
        f.memfd_seals = vma.memfd_seals();
        f.memfd_mode = vma.memfd_mode();
        f.memfd_uid = vma.memfd_uid();
        f.memfd_gid = vma.memfd_gid();
        f.shmem_id = vma.shmem_id();
        plan.mapped_files.push_back(std::move(f));
      }
      continue;
    }
    if (vma.kind() != pb::Vma::FILE_PRIVATE && vma.kind() != pb::Vma::FILE_SHARED) continue;
    auto it = std::find_if(plan.mapped_files.begin(), plan.mapped_files.end(),
                           [&](const MappedFile& f) { return f.path == vma.path(); });
    if (it == plan.mapped_files.end()) {
      MappedFile f;
      f.path = vma.path();
      f.identity = vma.file();
      plan.mapped_files.push_back(std::move(f));
      it = plan.mapped_files.end() - 1;
    }
    if (vma.kind() == pb::Vma::FILE_SHARED && (vma.prot() & 0x2 /*PROT_WRITE*/)) it->writable = true;
  }
  MappedFile exe;
  exe.path = plan.task.mm.exe_path();
  exe.identity = plan.task.mm.exe_file();
  plan.mapped_files.push_back(std::move(exe));
  plan.high_fd_base = std::max(max_fd(plan.task.fds) + 1, 10);
  return plan;
}

}  // namespace stasis::restore
