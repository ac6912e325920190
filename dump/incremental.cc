#include "dump/incremental.h"

#include "common/error.h"
#include "common/log.h"

namespace stasis::dump {

IncrementalDump::IncrementalDump(const DumpOptions& options, pid_t host_pid, int64_t page_id,
                                 const std::string& dump_id, Injector* injector, ptrace::SeizedThread* thread)
    : options_(options), pid_(host_pid), dump_id_(dump_id) {
  std::string parent_id;
  if (!options.parent.empty()) {
    parent_ = images::Checkpoint::open(options.parent);
    parent_->verify(images::Checkpoint::PageData::Later);  // a damaged parent is found now, not at restore
    parent_id = parent_->inventory().dump_id();
    if (parent_id.empty())
      log::warn("the parent checkpoint {} was not taken with dirty tracking: every page is saved",
                options.parent.string());
  }
  if (options.pre_dump || parent_) tracking_ = DirtyTracking::resume(options.state_root, host_pid, parent_id);
  if (!tracking_ && options.pre_dump && injector && thread)
    tracking_ = DirtyTracking::start(options.state_root, host_pid, *injector, *thread);
  if (tracking_ && tracking_->incremental()) {
    images::PageReader reader(parent_->dir(), page_id);
    parent_pages_ = images::pagemap_coverage(reader.entries(), reader.header().page_size());
  }
}

const PageTracking* IncrementalDump::tracking() {
  if (!tracking_) return nullptr;
  // The dump after a failed one cannot trust the bits: they may have been reset for pages
  // this one never wrote.
  tracking_->invalidate();
  page_tracking_.uffd = tracking_->uffd();
  page_tracking_.incremental = tracking_->incremental();
  page_tracking_.parent_pages = tracking_->incremental() ? &parent_pages_ : nullptr;
  return &page_tracking_;
}

void IncrementalDump::fill_inventory(pb::Inventory& inventory, const std::vector<const IncrementalDump*>& processes) {
  const IncrementalDump& first = *processes.front();
  inventory.set_dump_id(first.dump_id_);
  inventory.set_pre_dump(first.options_.pre_dump);
  for (const IncrementalDump* p : processes)
    if (p->incremental()) {
      images::ParentLink link = images::make_parent_link(first.options_.dir, *p->parent_);
      inventory.set_parent(link.path);
      inventory.set_parent_inventory_xxh3(link.inventory_xxh3);
      return;
    }
}

void IncrementalDump::finish() {
  if (options_.pre_dump && tracking_) {
    tracking_->keep(dump_id_);
  } else if (tracking_) {
    tracking_->end();
  } else {
    end_dirty_tracking(options_.state_root, pid_);
  }
}

}  // namespace stasis::dump
