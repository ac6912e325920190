// The incremental side of a dump (docs/dump.md, "Incremental dumps"): the parent checkpoint
// (--parent) and the dirty tracking of the job's process, for its memory phase. Per process,
// so that a dump of several runs one for each.
//
//  - `--pre-dump` starts the tracking (or continues it from the parent) and keeps it for the
//    next dump;
//  - a dump with `--parent DIR` saves only the pages written since DIR's dump when the tracking
//    counts from DIR, and every page otherwise (with a warning): never fewer;
//  - a dump without --pre-dump ends the tracking (the job runs without write faults again).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "dump/dirty_tracking.h"
#include "dump/dump.h"
#include "dump/memory.h"
#include "images/checkpoint.h"
#include "images/page_chain.h"
#include "inventory.pb.h"

namespace stasis::dump {

class IncrementalDump {
 public:
  // Opens the parent (if any) and takes over the tracking of host_pid. For a pre-dump without
  // a usable tracking, a new one is made through injector (in thread); without injector, none.
  // dump_id is the dump's (new_dump_id()), one for all its processes.
  IncrementalDump(const DumpOptions& options, pid_t host_pid, int64_t page_id, const std::string& dump_id,
                  Injector* injector = nullptr, ptrace::SeizedThread* thread = nullptr);

  // For dump_pages/plan_pages: nullptr when there is no tracking. The record stops naming any
  // dump from here (call it before any bit is reset).
  const PageTracking* tracking();
  bool incremental() const { return tracking_ && tracking_->incremental(); }
  // The dump id of the dump of these processes (the first one first, never empty), and the
  // parent link when any of them left pages to it.
  static void fill_inventory(pb::Inventory& inventory, const std::vector<const IncrementalDump*>& processes);
  // The checkpoint is complete: a pre-dump keeps the tracking for the next dump, others end it.
  void finish();

 private:
  const DumpOptions& options_;
  pid_t pid_;
  std::string dump_id_;
  std::optional<images::Checkpoint> parent_;
  std::optional<DirtyTracking> tracking_;
  images::RangeSet parent_pages_;
  PageTracking page_tracking_;
};

}  // namespace stasis::dump
