// Page files: the memory of one address space. pages-<id>.img holds chunks of page data,
// each compressed on its own (none, lz4 or zstd) and checksummed; pagemap-<id>.img says
// which virtual ranges live in which chunk. Writing and reading stream chunk by chunk, so
// memory use is bounded by the chunk size whatever the image size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "pagemap.pb.h"

namespace stasis::images {

enum class Compression { None, Lz4, Zstd };
// "none", "lz4", "zstd"; throws UsageError on anything else.
Compression parse_compression(std::string_view name);
std::string_view compression_name(Compression c);

struct PageStats {
  uint64_t pages = 0;         // pages added
  uint64_t zero_pages = 0;    // of which all-zero (stored as a range only)
  uint64_t raw_bytes = 0;     // uncompressed bytes of non-zero pages
  uint64_t stored_bytes = 0;  // bytes written to the page file (headers included)
};

class PageWriter {
 public:
  // Creates pages-<id>.img and pagemap-<id>.img in dir.
  PageWriter(const std::filesystem::path& dir, int64_t id, Compression compression,
             uint64_t chunk_size = 4 << 20);
  ~PageWriter();

  // Adds the bytes of [vaddr, vaddr + data.size()); both page-aligned. Ranges may come in any
  // order but must not overlap. The data is written (or compressed) before returning.
  void add(uint64_t vaddr, std::span<const std::byte> data);

  // The writes that encode() decided: bytes and the file offsets they go to. A batch owns the
  // bytes it copied or compressed, and points into the data given to encode(), which must
  // stay valid until the batch is written.
  class Batch {
   public:
    Batch();
    ~Batch();
    Batch(Batch&&) noexcept;
    Batch& operator=(Batch&&) noexcept;
    bool empty() const;

   private:
    friend class PageWriter;
    struct Data;
    std::unique_ptr<Data> d_;
  };
  // add() in two halves, so that a dump can compress on one thread while another writes:
  // encode() finds the zero pages, checksums, compresses and appends to batch what is to be
  // written (one thread, calls in the order add() would get them); write() does the I/O of a
  // batch and empties it (any thread, any order: every batch has its own file offsets).
  void encode(uint64_t vaddr, std::span<const std::byte> data, Batch& batch);
  void write(Batch& batch);

  // Writes the last chunk and the pagemap; throws on I/O error. Every encoded batch must have
  // been written first.
  void finish();
  const PageStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class PageReader {
 public:
  struct Options {
    // Maps the page file instead of reading it: uncompressed chunks are used in place, without
    // a copy. (The file must not shrink meanwhile; restore's images are its own.)
    bool mapped = false;
    // Checks each chunk's data against its checksum. Off only for a file that was just
    // verified as a whole (Checkpoint::verify); headers are always checked.
    bool check_data = true;
  };

  // Opens both files; checks headers.
  PageReader(const std::filesystem::path& dir, int64_t id);
  PageReader(const std::filesystem::path& dir, int64_t id, Options options);
  ~PageReader();

  const pb::PagemapHeader& header() const;
  const std::vector<pb::PagemapEntry>& entries() const;  // in file order

  // Calls fn for every saved range, streaming chunk by chunk. For zero ranges data is empty
  // and zero is true. A chunk with a bad checksum or that fails to decompress throws an
  // Error naming the file and offset.
  using RangeFn = std::function<void(uint64_t vaddr, uint64_t length, std::span<const std::byte> data, bool zero)>;
  void for_each(const RangeFn& fn);
  // The raw bytes of data entry `index` (not a zero one), valid until the next call on this
  // reader. One reader per thread: several may read one file at once.
  std::span<const std::byte> data(size_t index);
  // Reads [vaddr, vaddr+length) if it is entirely saved (for `stasis show --pages`).
  std::vector<std::byte> read_range(uint64_t vaddr, uint64_t length);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stasis::images
