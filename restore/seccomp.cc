#include "restore/seccomp.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>

#include "common/error.h"
#include "common/ptrace.h"

namespace stasis::restore {

namespace {

void install_filter(Remote& r, const pb::SeccompFilter& filter, uint64_t extra_flags) {
  const std::string& program = filter.program();
  const size_t count = program.size() / sizeof(sock_filter);
  if (program.size() % sizeof(sock_filter) != 0 || count == 0 || count > BPF_MAXINSNS)
    fail("core image: a seccomp filter of {} bytes is not a BPF program", program.size());
  const uint64_t flags = (filter.flags() & SECCOMP_FILTER_FLAG_LOG) | extra_flags;
  // The program can be up to 32 KiB, more than our scratch area: it goes into a mapping of
  // its own for the call.
  const uint64_t length = (program.size() + 4095) & ~uint64_t{4095};
  const uint64_t where = r.call_checked("mmap (seccomp filter)", SYS_mmap, 0, length, PROT_READ | PROT_WRITE,
                                        MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0);
  ptrace::write_memory(r.host_pid(), where, std::as_bytes(std::span(program.data(), program.size())));
  sock_fprog fprog{};
  fprog.len = static_cast<unsigned short>(count);
  fprog.filter = reinterpret_cast<sock_filter*>(where);
  const long rc = r.call(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, r.put_scratch(&fprog, sizeof fprog));
  r.call(SYS_munmap, where, length);
  if (rc < 0)
    fail("pid {}: install a seccomp filter of {} instructions: {}", r.host_pid(), count,
         describe_errno(static_cast<int>(-rc)));
  if (rc > 0) fail("pid {}: seccomp filters could not be synchronised with thread {}", r.host_pid(), rc);
}

void restore_thread_seccomp(Remote& r, const pb::ThreadSeccomp& s, uint64_t extra_flags) {
  switch (s.mode()) {
    case SECCOMP_MODE_DISABLED:
      return;
    case SECCOMP_MODE_STRICT:
      r.call_checked("seccomp(SECCOMP_SET_MODE_STRICT)", SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, 0);
      return;
    case SECCOMP_MODE_FILTER:
      for (const auto& f : s.filters()) install_filter(r, f, extra_flags);
      return;
    default:
      fail("core image: unknown seccomp mode {}", s.mode());
  }
}

}  // namespace

bool uses_seccomp(const pb::TaskCore& core) {
  return std::any_of(core.threads().begin(), core.threads().end(),
                     [](const pb::ThreadCore& t) { return t.seccomp().mode() != SECCOMP_MODE_DISABLED; });
}

void restore_seccomp(Remote& leader, std::vector<RestoredThread>& threads, const pb::TaskCore& core) {
  if (!uses_seccomp(core)) return;
  const std::string leader_state = core.threads(0).seccomp().SerializeAsString();
  const bool shared = core.threads(0).seccomp().mode() == SECCOMP_MODE_FILTER &&
                      std::all_of(core.threads().begin(), core.threads().end(), [&](const pb::ThreadCore& t) {
                        return t.seccomp().SerializeAsString() == leader_state;
                      });
  if (shared) {
    restore_thread_seccomp(leader, core.threads(0).seccomp(), threads.empty() ? 0 : SECCOMP_FILTER_FLAG_TSYNC);
    return;
  }
  restore_thread_seccomp(leader, core.threads(0).seccomp(), 0);
  for (auto& t : threads) {
    Remote r(t.thread, leader.host_pid(), leader.code_page());
    restore_thread_seccomp(r, thread_core(core, t.ns_tid).seccomp(), 0);
    r.finish();
  }
}

}  // namespace stasis::restore
