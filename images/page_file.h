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
  uint64_t parent_pages = 0;  // pages left to the parent checkpoint (in_parent entries; not in `pages`)
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

  // encode() of each range in turn, then the open chunk is closed into batch: a chunk never
  // spans two batches, so the checksum of one whose bytes lie together (ranges back to back
  // in one buffer, no zero page between) is taken in one pass with the fast one-shot hash when
  // it closes, instead of piece by piece, and lz4/zstd compress it from there without a copy.
  // Chunks then hold at most a batch's data.
  struct Range {
    uint64_t vaddr;
    std::span<const std::byte> data;
  };
  void encode(std::span<const Range> ranges, Batch& batch);

  // Records [vaddr, vaddr + pages) as unchanged since the parent checkpoint (an in_parent
  // entry, no data). Between encode() calls, on the encoding thread.
  void add_in_parent(uint64_t vaddr, uint64_t pages);

  // Writes the last chunk and the pagemap; throws on I/O error. Every encoded batch must have
  // been written first.
  void finish();
  const PageStats& stats() const;

 private:
  void encode_range(uint64_t vaddr, std::span<const std::byte> data, Batch& batch);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One chunk of a page file as its header describes it (images/page_format.h).
struct PageChunk {
  uint64_t offset = 0;  // of its header in the file
  uint8_t code = 0;     // page_format::kCode*
  uint32_t raw_size = 0, stored_size = 0;
  uint64_t sum = 0;  // XXH3-64 of the stored bytes
};

// Every chunk header of an open page file, each checked (magic, its own checksum, its data
// within the file), and the file's seal: the XXH3-64 of the file header and of every chunk
// header, which is what the inventory lists as a page file's checksum. Reads 32 bytes a chunk.
struct PageFileLayout {
  uint64_t size = 0;
  std::vector<PageChunk> chunks;  // in file order
  uint64_t seal = 0;
};
PageFileLayout read_page_file_layout(int fd, const std::filesystem::path& path);

class PageReader {
 public:
  struct Options {
    // Maps the page file instead of reading it: uncompressed chunks are used in place, without
    // a copy. (The file must not shrink meanwhile.)
    bool mapped = false;
    // Checks each chunk's data against its checksum. Off only for a file that was just
    // verified as a whole (Checkpoint::verify); headers are always checked.
    bool check_data = true;
  };

  // Opens both files; checks headers.
  PageReader(const std::filesystem::path& dir, int64_t id);
  PageReader(const std::filesystem::path& dir, int64_t id, Options options);
  // A sealed reader, given the page file's checksum in the inventory (Checkpoint::open_pages):
  // every chunk header is read once, here, and checked against it; chunks are then read by
  // these headers only, never the file's again, and every chunk's data is checked, so that a
  // file changed after the open (its data, or a chunk rewritten whole with a matching header)
  // fails its chunk's check instead of passing. Every data entry must lie in a listed chunk.
  static std::unique_ptr<PageReader> open_sealed(const std::filesystem::path& dir, int64_t id,
                                                 const std::string& sealed_xxh3);
  ~PageReader();

  const pb::PagemapHeader& header() const;
  const std::vector<pb::PagemapEntry>& entries() const;  // in file order
  const std::filesystem::path& pages_path() const;

  // Sealed readers only: every chunk, in file order, and the indexes of the data entries
  // each holds (by offset in the chunk).
  const std::vector<PageChunk>& chunks() const;
  const std::vector<size_t>& chunk_entries(size_t chunk) const;
  // Another reader of the same files sharing this one's pagemap and chunk headers, with its
  // own buffers: one per thread.
  std::unique_ptr<PageReader> share() const;

  // Hands every data range of chunk `chunk` (of chunks()) to fn, from this reader's private
  // buffers: the chunk is read whole with pread, checked against the checksum listed at open,
  // then decompressed if need be. What fn is given is exactly what was checked, and a bad
  // chunk throws an Error naming the file and the chunk's offset before fn sees any of it.
  using DataFn = std::function<void(uint64_t vaddr, std::span<const std::byte> data)>;
  void stream_chunk(size_t chunk, const DataFn& fn);
  // Bytes of buffers stream_chunk needs at most (for the caller's memory budget).
  uint64_t stream_buffer_bytes() const;

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
  struct Index;
  struct Impl;
  explicit PageReader(std::shared_ptr<const Index> index);
  std::unique_ptr<Impl> impl_;
};

}  // namespace stasis::images
