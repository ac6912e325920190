#include "images/page_chain.h"

#include <xxhash.h>

#include <algorithm>
#include <set>

#include "common/error.h"
#include "common/file_util.h"
#include "common/json.h"
#include "images/image_type.h"

namespace stasis::images {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxChain = 256;  // links followed at most: a loop of links ends here

std::string inventory_sum(const fs::path& dir) {
  const std::string text = read_file(dir / image_file_name(ImageType::Inventory));
  return fmt::format("{:016x}", XXH3_64bits(text.data(), text.size()));
}

}  // namespace

void RangeSet::add(uint64_t start, uint64_t end) {
  if (start >= end) return;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= start) {
      start = prev->first;
      end = std::max(end, prev->second);
      it = ranges_.erase(prev);
    }
  }
  while (it != ranges_.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = ranges_.erase(it);
  }
  ranges_.emplace(start, end);
}

void RangeSet::remove(uint64_t start, uint64_t end) {
  if (start >= end) return;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin()) --it;
  while (it != ranges_.end() && it->first < end) {
    const uint64_t s = it->first, e = it->second;
    if (e <= start) {
      ++it;
      continue;
    }
    it = ranges_.erase(it);
    if (s < start) ranges_.emplace(s, start);
    if (e > end) {
      ranges_.emplace(end, e);
      break;
    }
  }
}

void RangeSet::inside(uint64_t start, uint64_t end, const PieceFn& fn) const {
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin()) --it;
  for (; it != ranges_.end() && it->first < end; ++it) {
    const uint64_t s = std::max(start, it->first), e = std::min(end, it->second);
    if (s < e) fn(s, e);
  }
}

void RangeSet::outside(uint64_t start, uint64_t end, const PieceFn& fn) const {
  uint64_t at = start;
  inside(start, end, [&](uint64_t s, uint64_t e) {
    if (at < s) fn(at, s);
    at = e;
  });
  if (at < end) fn(at, end);
}

uint64_t RangeSet::bytes() const {
  uint64_t n = 0;
  for (const auto& [s, e] : ranges_) n += e - s;
  return n;
}

RangeSet pagemap_coverage(const std::vector<pb::PagemapEntry>& entries, uint64_t page_size) {
  RangeSet out;
  for (const auto& e : entries) out.add(e.vaddr(), e.vaddr() + e.nr_pages() * page_size);
  return out;
}

ParentLink make_parent_link(const fs::path& child_dir, const Checkpoint& parent) {
  const fs::path child = fs::absolute(child_dir).lexically_normal();
  const fs::path target = fs::absolute(parent.dir()).lexically_normal();
  fs::path rel = target.lexically_relative(child);
  return {rel.empty() ? target.string() : rel.string(), inventory_sum(parent.dir())};
}

std::optional<Checkpoint> open_parent(const Checkpoint& child, Checkpoint::PageData page_data) {
  const pb::Inventory& inv = child.inventory();
  if (inv.parent().empty()) return std::nullopt;
  fs::path dir = fs::path(inv.parent()).is_absolute() ? fs::path(inv.parent()) : child.dir() / inv.parent();
  dir = dir.lexically_normal();
  std::error_code ec;
  if (!fs::exists(dir / image_file_name(ImageType::Inventory), ec))
    fail("checkpoint {} refers to the parent checkpoint {}, which is missing (an incremental checkpoint needs every "
         "checkpoint of its chain)",
         child.dir().string(), dir.string());
  const std::string sum = inventory_sum(dir);
  if (sum != inv.parent_inventory_xxh3())
    fail("checkpoint {} refers to the parent checkpoint {}, which changed since (its inventory's XXH3 is {}, the child "
         "recorded {}): not the parent it was dumped against",
         child.dir().string(), dir.string(), sum, inv.parent_inventory_xxh3());
  Checkpoint parent = Checkpoint::open(dir);
  with_context(fmt::format("parent checkpoint {} of {}", dir.string(), child.dir().string()),
               [&] { parent.verify(page_data); });
  return parent;
}

void refuse_pre_dump(const Checkpoint& checkpoint) {
  if (checkpoint.inventory().pre_dump())
    fail("checkpoint {} is a pre-dump (memory only, --pre-dump): restore the checkpoint of the last dump, which refers "
         "to it",
         checkpoint.dir().string());
}

std::vector<ParentPages> open_parent_pages(const Checkpoint& checkpoint, int64_t id, const PageReader& own) {
  std::vector<ParentPages> out;
  const uint64_t ps = own.header().page_size();
  RangeSet want;
  for (const auto& e : own.entries())
    if (e.in_parent()) want.add(e.vaddr(), e.vaddr() + e.nr_pages() * ps);
  if (want.empty()) return out;
  std::optional<Checkpoint> link = open_parent(checkpoint, Checkpoint::PageData::Later);
  if (!link) fail("checkpoint {}: pages-{}.img leaves pages to a parent, but the inventory names none",
                  checkpoint.dir().string(), id);
  for (size_t depth = 0; !want.empty(); ++depth) {
    if (depth >= kMaxChain) fail("checkpoint {}: its chain of parents is longer than {}", checkpoint.dir().string(), kMaxChain);
    ParentPages p;
    p.dir = link->dir();
    p.pages = link->open_pages(id);
    if (p.pages->header().page_size() != ps)
      fail("parent checkpoint {}: page size {}, the child's is {}", p.dir.string(), p.pages->header().page_size(), ps);
    RangeSet next, covered;
    for (const auto& e : p.pages->entries()) {
      const uint64_t s = e.vaddr(), end = s + e.nr_pages() * ps;
      covered.add(s, end);
      want.inside(s, end, [&](uint64_t a, uint64_t b) { (e.in_parent() ? next : p.take).add(a, b); });
    }
    for (const auto& [s, e] : want.ranges())
      covered.outside(s, e, [&](uint64_t a, uint64_t b) {
        fail("checkpoint {}: pages {:#x}-{:#x} of pages-{}.img are left to the parent checkpoint {}, which does not "
             "have them",
             checkpoint.dir().string(), a, b, id, p.dir.string());
      });
    want = std::move(next);
    out.push_back(std::move(p));
    if (want.empty()) break;
    Checkpoint current = *link;
    link = open_parent(current, Checkpoint::PageData::Later);
    if (!link)
      fail("checkpoint {}: pages of pages-{}.img are left to a parent of {}, which names none",
           checkpoint.dir().string(), id, current.dir().string());
  }
  return out;
}

std::string chain_json(const Checkpoint& checkpoint) {
  std::string out = "[";
  std::optional<Checkpoint> link = checkpoint;
  for (size_t depth = 0; link && depth < kMaxChain; ++depth) {
    const pb::Inventory& inv = link->inventory();
    if (depth) out += ',';
    out += fmt::format("{{\"directory\":{},\"dump_id\":{},\"pre_dump\":{},\"created_unix_ns\":{},\"parent\":{}}}",
                       json_string(link->dir().string()), json_string(inv.dump_id()), inv.pre_dump() ? "true" : "false",
                       inv.created_unix_ns(), json_string(inv.parent()));
    Checkpoint current = *link;
    link = open_parent(current, Checkpoint::PageData::Later);
  }
  return out + "]";
}

size_t verify_parents(const Checkpoint& checkpoint) {
  size_t files = 0;
  std::set<int64_t> ids;
  for (const auto& image : checkpoint.inventory().images()) {
    auto parsed = parse_image_file_name(image.name());
    if (parsed && parsed->type == ImageType::Pages && parsed->id) ids.insert(*parsed->id);
  }
  std::optional<Checkpoint> link = checkpoint;
  for (size_t depth = 0; depth < kMaxChain; ++depth) {
    Checkpoint current = *link;
    link = open_parent(current, Checkpoint::PageData::Check);
    if (!link) break;
    files += static_cast<size_t>(link->inventory().images_size()) + 1;
  }
  // Every page left to the parents is in one (a pre-dump's own pages are all its own).
  for (int64_t id : ids) {
    auto own = checkpoint.open_pages(id);
    bool leaves = false;
    for (const auto& e : own->entries()) leaves = leaves || e.in_parent();
    if (!leaves) continue;
    RangeSet want;
    const uint64_t ps = own->header().page_size();
    for (const auto& e : own->entries())
      if (e.in_parent()) want.add(e.vaddr(), e.vaddr() + e.nr_pages() * ps);
    std::optional<Checkpoint> p = open_parent(checkpoint, Checkpoint::PageData::Later);
    while (!want.empty()) {
      if (!p) fail("checkpoint {}: pages of pages-{}.img are left to a parent the chain does not have",
                   checkpoint.dir().string(), id);
      auto reader = p->open_pages(id);
      RangeSet next, covered;
      for (const auto& e : reader->entries()) {
        const uint64_t s = e.vaddr(), end = s + e.nr_pages() * ps;
        covered.add(s, end);
        if (e.in_parent()) want.inside(s, end, [&](uint64_t a, uint64_t b) { next.add(a, b); });
      }
      for (const auto& [s, e] : want.ranges())
        covered.outside(s, e, [&](uint64_t a, uint64_t b) {
          fail("checkpoint {}: pages {:#x}-{:#x} of pages-{}.img are left to the parent checkpoint {}, which does not "
               "have them",
               checkpoint.dir().string(), a, b, id, p->dir().string());
        });
      want = std::move(next);
      Checkpoint current = *p;
      p = open_parent(current, Checkpoint::PageData::Later);
    }
  }
  return files;
}

}  // namespace stasis::images
