// Dirty-memory tracking for incremental dumps, on kernels without soft-dirty bits (this one,
// arm64's): a userfaultfd in write-protect async mode (UFFD_FEATURE_WP_ASYNC with
// WP_UNPOPULATED, Linux 6.7+) on the job's address space, whose write-protect bits the
// PAGEMAP_SCAN ioctl reads and sets again in one call (PAGE_IS_WRITTEN, PM_SCAN_WP_MATCHING):
// a page a dump saved is write-protected; the job's first write to it clears the bit (the
// kernel resolves the fault itself, no thread of ours is involved); the next dump saves the
// pages whose bit is clear and refers to its parent for the others.
//
// A userfaultfd works on the address space of the process that created it, so it is made in
// the job by an injected userfaultfd(2), taken over with pidfd_getfd(2) and closed in the job.
// It must stay open between `stasis dump --pre-dump` and the next dump (closing it unregisters
// everything), and stasis exits in between: a small tracker process of ours ("stasis-track",
// in its own session, outside the job's cgroup) holds it until the job exits or a dump ends
// the tracking. A tracker, not the container's monitor: `dump --pid` jobs have no monitor,
// and a separate process leaves the launcher alone. The record of a tracking lives in
// STATE_ROOT/dirty-tracking/<host pid>: the job's and the tracker's pids and start times, the
// fd number in the tracker, and the dump whose scan last reset the bits.
//
// Why nothing can be missed: a dump is incremental only when the record names its parent as
// the last reset, the tracker is alive and the same process, and the job is the same process;
// a record is invalidated before any bit is reset and written again only once the dump is
// complete, so a dump that fails half way leaves no record a later dump could trust. Per VMA,
// only one registered with our userfaultfd (VmFlags "uw", and registering it again succeeds,
// which another userfaultfd's would refuse) counts as tracked; any other is saved whole. A
// page is left to the parent only if it is present, not written since, and covered by the
// parent's pagemap; swapped-out and marker pages are saved.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>

#include "common/fd.h"
#include "common/ptrace.h"

namespace stasis::dump {

class Injector;

// One process's tracking, for the length of a dump.
class DirtyTracking {
 public:
  // Takes over the tracking of pid if a live tracker holds it (locks the record for this
  // dump). `parent_dump_id`: the dump_id of the checkpoint the new one will refer to (empty:
  // none); the pages can be taken incrementally only when it is the tracker's last reset.
  // Nothing (no tracking) when there is none or it cannot be trusted; the reason is logged.
  static std::optional<DirtyTracking> resume(const std::filesystem::path& state_root, pid_t pid,
                                             const std::string& parent_dump_id);
  // A new tracking: a userfaultfd made in the job through injector (run in thread), in
  // write-protect async mode. Throws UnsupportedError saying why when the kernel or the job
  // does not allow it.
  static DirtyTracking start(const std::filesystem::path& state_root, pid_t pid, Injector& injector,
                             ptrace::SeizedThread& thread);

  DirtyTracking(DirtyTracking&&) = default;
  DirtyTracking& operator=(DirtyTracking&&) = default;
  ~DirtyTracking();

  int uffd() const { return uffd_.get(); }
  // True when the written bits count from the parent's dump: untouched pages of tracked VMAs
  // may be left to the parent.
  bool incremental() const { return incremental_; }

  // Before the first bit is reset: the record no longer names any dump.
  void invalidate();
  // The dump is complete and the job runs on: the tracker keeps the userfaultfd (started
  // now if this tracking is new) and the record names dump_id as the last reset.
  void keep(const std::string& dump_id);
  // The dump is complete and tracking ends: the tracker is stopped, the record removed (the
  // job's VMAs are unregistered when the userfaultfd closes).
  void end();

 private:
  DirtyTracking() = default;
  std::filesystem::path record_;
  UniqueFd lock_;
  pid_t pid_ = 0;
  uint64_t job_start_ = 0;
  UniqueFd uffd_;
  pid_t tracker_pid_ = 0;  // 0: none yet (a new tracking)
  uint64_t tracker_start_ = 0;
  int tracker_fd_ = -1;
  bool incremental_ = false;
};

// Ends the tracking of pid, if any (a dump that does not continue it); errors only logged.
void end_dirty_tracking(const std::filesystem::path& state_root, pid_t pid);

// A new random dump id (32 hex digits).
std::string new_dump_id();

}  // namespace stasis::dump
