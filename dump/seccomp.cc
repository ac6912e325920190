#include "dump/seccomp.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ptrace.h>

#include <cerrno>
#include <vector>

#include "common/error.h"

namespace stasis::dump {

namespace {

// True when some instruction returns SECCOMP_RET_USER_NOTIF as a constant.
bool notifies_a_supervisor(const std::vector<sock_filter>& program) {
  for (const sock_filter& insn : program)
    if (insn.code == (BPF_RET | BPF_K) && (insn.k & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_USER_NOTIF) return true;
  return false;
}

}  // namespace

pb::ThreadSeccomp collect_seccomp(pid_t tid, int mode) {
  pb::ThreadSeccomp out;
  out.set_mode(static_cast<uint32_t>(mode));
  if (mode != SECCOMP_MODE_FILTER) return out;
  for (unsigned long index = 0;; ++index) {
    long count = ::ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, nullptr);
    if (count < 0 && errno == ENOENT) break;  // past the newest filter
    if (count < 0)
      fail_errno(errno, "tid {}: PTRACE_SECCOMP_GET_FILTER {} (reading seccomp filters needs CAP_SYS_ADMIN and "
                 "CONFIG_CHECKPOINT_RESTORE)", tid, index);
    std::vector<sock_filter> program(static_cast<size_t>(count));
    if (::ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, program.data()) != count)
      fail_errno(errno, "tid {}: PTRACE_SECCOMP_GET_FILTER {} changed size", tid, index);
    if (notifies_a_supervisor(program))
      throw UnsupportedError(fmt::format("tid {}: seccomp filter {} hands system calls to a supervisor "
                                         "(SECCOMP_RET_USER_NOTIF): not supported",
                                         tid, index));
    __ptrace_seccomp_metadata meta{index, 0};
    if (::ptrace(PTRACE_SECCOMP_GET_METADATA, tid, sizeof meta, &meta) < 0)
      fail_errno(errno, "tid {}: PTRACE_SECCOMP_GET_METADATA {}", tid, index);
    pb::SeccompFilter* f = out.add_filters();
    f->set_program(program.data(), program.size() * sizeof(sock_filter));
    f->set_flags(meta.flags);
  }
  if (out.filters_size() == 0) fail("tid {}: in seccomp filter mode, but no filter could be read", tid);
  return out;
}

}  // namespace stasis::dump
