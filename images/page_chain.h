// Chains of checkpoints (incremental dumps, docs/images.md "Chains"): a checkpoint whose
// pagemaps have in_parent entries names its parent directory and the checksum of the parent's
// inventory (which seals every file of the parent, and through its own link the rest). Each
// page comes from the newest checkpoint of the chain that has it as data or zero.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "images/checkpoint.h"
#include "images/page_file.h"

namespace stasis::images {

// Sorted, disjoint [start, end) ranges, merged when they touch.
class RangeSet {
 public:
  void add(uint64_t start, uint64_t end);
  void remove(uint64_t start, uint64_t end);
  // fn(start, end) for each piece of [start, end) in the set / not in the set, in order.
  using PieceFn = std::function<void(uint64_t start, uint64_t end)>;
  void inside(uint64_t start, uint64_t end, const PieceFn& fn) const;
  void outside(uint64_t start, uint64_t end, const PieceFn& fn) const;
  bool empty() const { return ranges_.empty(); }
  uint64_t bytes() const;
  const std::map<uint64_t, uint64_t>& ranges() const { return ranges_; }

 private:
  std::map<uint64_t, uint64_t> ranges_;  // start -> end
};

// Every range a pagemap lists (data, zero or in_parent): what a child may leave to it.
RangeSet pagemap_coverage(const std::vector<pb::PagemapEntry>& entries, uint64_t page_size);

// The link a new checkpoint records to its parent: the parent's path relative to the child's
// directory, and its inventory's checksum.
struct ParentLink {
  std::string path;
  std::string inventory_xxh3;
};
ParentLink make_parent_link(const std::filesystem::path& child_dir, const Checkpoint& parent);

// The parent of a checkpoint, checked: it exists, its inventory has the recorded checksum, and
// its files their listed sizes and checksums (page data: headers only, as Checkpoint::verify
// with PageData::Later). Nothing when the checkpoint has no parent. Errors name the parent.
std::optional<Checkpoint> open_parent(const Checkpoint& child, Checkpoint::PageData page_data);

// Throws when the checkpoint is a pre-dump, which holds memory only.
void refuse_pre_dump(const Checkpoint& checkpoint);

// The pages of one address space (page file `id`) that a restore takes from each parent:
// for each link, nearest first, its sealed reader and the ranges of its pagemap to take
// (data or zero). Throws when a page left to the parents is in none of them.
struct ParentPages {
  std::filesystem::path dir;
  std::shared_ptr<const PageReader> pages;
  RangeSet take;
};
std::vector<ParentPages> open_parent_pages(const Checkpoint& checkpoint, int64_t id, const PageReader& own);

// One line per link of the chain, for `stasis show` (JSON objects: directory, dump_id,
// pre_dump, created_unix_ns), the checkpoint itself first.
std::string chain_json(const Checkpoint& checkpoint);
// show --verify: every parent link's checksum, every file of every parent (page data
// included), and that every page left to the parents is in one. Returns the number of files
// checked in the parents.
size_t verify_parents(const Checkpoint& checkpoint);

}  // namespace stasis::images
