// PageWriter: splits what it is given into zero ranges and data, packs the data into
// chunks of at most chunk_size raw bytes, compresses each chunk on its own and writes it
// with a checksummed header; pagemap entries are streamed to pagemap-<id>.img as ranges end.
// A chunk whose bytes lie together in the caller's buffer is checksummed or compressed from
// there, in one pass; otherwise its bytes are hashed, or copied for compression, as they go.
//
// Speed matters (this is the bulk of a dump): zero pages are found by comparing 64-bit words
// with an early exit; with compression none, runs of pages are written straight from the
// caller's buffer (only small runs are copied), and the checksum is taken when the chunk
// closes, in one pass over its bytes if they lie together (else piece by piece as they went
// by), the chunk header being written last, into the room kept for it. The work is split in
// two (encode, write) so that a dump can run them on two threads: every write carries its
// own file offset, and the bytes a batch owns come from pools that write() refills.
#include <fcntl.h>
#include <lz4.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "common/error.h"
#include "common/free_list.h"
#include "common/fast_hash.h"
#include "common/file_util.h"
#include "common/progress.h"
#include "images/format.h"
#include "images/image_file.h"
#include "images/page_file.h"
#include "images/page_format.h"

namespace stasis::images {

namespace {

constexpr uint64_t kPageSize = 4096;
constexpr size_t kHeader = page_format::kChunkHeaderSize;
constexpr size_t kStagingSize = 256 << 10;
constexpr size_t kDirectWrite = 16 << 10;  // runs at least this big are written from the caller's buffer
constexpr size_t kMaxIov = 512;            // below IOV_MAX (1024)

bool is_zero_page(const std::byte* p) {
  // 8 words per step: the OR lets the compiler vectorise, the early exit keeps data pages cheap.
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < kPageSize / 8; i += 8) {
    uint64_t acc = 0;
    for (size_t j = 0; j < 8; ++j) {
      uint64_t v;
      std::memcpy(&v, w + i + j, sizeof v);
      acc |= v;
    }
    if (acc != 0) return false;
  }
  return true;
}

void fill_chunk_header(std::byte* h, uint8_t code, uint32_t raw, uint32_t stored, uint64_t sum) {
  using format::store;
  store<uint32_t>(h, page_format::kChunkMagic);
  store<uint8_t>(h + 4, code);
  store<uint8_t>(h + 5, 0);
  store<uint16_t>(h + 6, 0);
  store<uint32_t>(h + 8, raw);
  store<uint32_t>(h + 12, stored);
  store<uint64_t>(h + 16, sum);
  store<uint64_t>(h + 24, XXH3_64bits(h, 24));
}

using Block = std::unique_ptr<std::byte[]>;

// Blocks of one size, reused: taken by encode(), given back by write() from another thread.
class BlockPool {
 public:
  explicit BlockPool(size_t size) : size_(size) {}
  size_t size() const { return size_; }
  Block take() {
    if (auto b = free_.take()) return std::move(*b);
    return Block(new std::byte[size_]);  // not zeroed: every byte used is written first
  }
  void give(Block b) { free_.give(b); }
  // The pool of blocks of that size every writer of this process shares: a tree's processes
  // are written one after another (two at once), and fresh blocks for each would be faulted
  // in and zeroed by the kernel again. It keeps what the busiest moment needed.
  static BlockPool& shared(size_t size) {
    static std::mutex mutex;
    static std::map<size_t, std::unique_ptr<BlockPool>> pools;
    std::lock_guard lock(mutex);
    auto& pool = pools[size];
    if (!pool) pool = std::make_unique<BlockPool>(size);
    return *pool;
  }

 private:
  size_t size_;
  FreeList<Block> free_{SIZE_MAX};  // as many as were ever out at once
};

}  // namespace

struct PageWriter::Batch::Data {
  struct Segment {
    uint64_t offset;  // in the page file
    uint64_t size;
    std::vector<iovec> iov;
  };
  std::vector<Segment> segments;
  std::vector<std::pair<Block, BlockPool*>> blocks;  // what the iovecs point into, with their pool
  std::byte* staging = nullptr;                      // the last staging block, while it has room
  size_t staged = 0;

  // Queues n bytes at p for file offset `offset`, joining the previous segment when they follow.
  void append(uint64_t offset, const void* p, size_t n) {
    if (!segments.empty() && segments.back().offset + segments.back().size == offset) {
      Segment& s = segments.back();
      iovec& last = s.iov.back();
      if (static_cast<const std::byte*>(last.iov_base) + last.iov_len == p) last.iov_len += n;
      else s.iov.push_back({const_cast<void*>(p), n});
      s.size += n;
      return;
    }
    segments.push_back({offset, n, {{const_cast<void*>(p), n}}});
  }
  // Copies n bytes (at most the staging size) into a staging block and queues them.
  void copy(uint64_t offset, const void* p, size_t n, BlockPool& pool) {
    if (!staging || staged + n > pool.size()) {
      blocks.emplace_back(pool.take(), &pool);
      staging = blocks.back().first.get();
      staged = 0;
    }
    std::byte* dst = staging + staged;
    std::memcpy(dst, p, n);
    staged += n;
    append(offset, dst, n);
  }
  void own(Block b, BlockPool& pool) { blocks.emplace_back(std::move(b), &pool); }
};

PageWriter::Batch::Batch() : d_(std::make_unique<Data>()) {}
PageWriter::Batch::~Batch() = default;
PageWriter::Batch::Batch(Batch&&) noexcept = default;
PageWriter::Batch& PageWriter::Batch::operator=(Batch&&) noexcept = default;
bool PageWriter::Batch::empty() const { return !d_ || d_->segments.empty(); }

Compression parse_compression(std::string_view name) {
  if (name == "none") return Compression::None;
  if (name == "lz4") return Compression::Lz4;
  if (name == "zstd") return Compression::Zstd;
  throw UsageError(fmt::format("unknown compression '{}' (expected none, lz4 or zstd)", name));
}

std::string_view compression_name(Compression c) {
  switch (c) {
    case Compression::None: return "none";
    case Compression::Lz4: return "lz4";
    case Compression::Zstd: return "zstd";
  }
  return "unknown";
}

struct PageWriter::Impl {
  using Data = Batch::Data;

  std::filesystem::path pages_path;
  UniqueFd fd;
  std::optional<ImageWriter> pagemap;
  Compression compression;
  uint64_t chunk_size;
  PageStats stats;
  uint64_t end = 0;  // file offset after everything encoded
  bool finished = false;
  // An encode() or write() threw: what is in the file no longer matches the pagemap.
  std::atomic<bool> failed = false;

  BlockPool& staging_pool = BlockPool::shared(kStagingSize);
  // lz4/zstd: a chunk's room, header first: the raw chunk as it fills, or its compressed form.
  BlockPool* chunk_pool = nullptr;

  // The open chunk.
  bool chunk_open = false;
  uint64_t chunk_start = 0;  // file offset of its header
  uint64_t chunk_raw = 0;    // raw bytes in it so far

  // The open chunk's last bytes, which lie together in the caller's buffer (valid until the
  // end of the encode() call), at span_at in the chunk; streamed once bytes before them have
  // gone into the running checksum (none) or been copied into raw (lz4/zstd). A chunk whose
  // bytes all lie together is hashed in one pass by the fast hash (common/fast_hash.h: the same
  // XXH3-64, about twice as fast here), or compressed straight from the caller's buffer.
  const std::byte* span = nullptr;
  size_t span_len = 0;
  uint64_t span_at = 0;
  bool streamed = false;
  XXH3_state_t* hash = nullptr;  // compression none

  // lz4/zstd: the raw chunk after kHeader bytes of room, for a chunk whose bytes do not lie
  // together.
  Block raw;
  ZSTD_CCtx* zstd = nullptr;

  // The last pagemap range, still growing.
  std::optional<pb::PagemapEntry> pending;

  ~Impl() {
    if (raw && chunk_pool) chunk_pool->give(std::move(raw));
    if (hash) XXH3_freeState(hash);
    if (zstd) ZSTD_freeCCtx(zstd);
  }

  void flush_entry() {
    if (pending) pagemap->write(*pending);
    pending.reset();
  }

  void open_chunk() {
    chunk_open = true;
    chunk_start = end;
    chunk_raw = 0;
    span_len = 0;
    streamed = false;
    if (compression == Compression::None) end += kHeader;  // room for the header, written when the chunk closes
  }

  // n more bytes of the open chunk, at p (chunk_raw not yet counting them).
  void add_piece(const std::byte* p, size_t n) {
    if (span_len > 0 && span + span_len == p) {
      span_len += n;
      return;
    }
    flush_span();
    span = p;
    span_len = n;
    span_at = chunk_raw;
  }
  // Out of the caller's buffer: before it may go away, or when the next bytes do not follow.
  void flush_span() {
    if (span_len == 0) return;
    if (compression == Compression::None) {
      if (!streamed) XXH3_64bits_reset(hash);
      XXH3_64bits_update(hash, span, span_len);
    } else {
      std::memcpy(raw.get() + kHeader + span_at, span, span_len);
    }
    streamed = true;
    span_len = 0;
  }
  // Compression none: the chunk's checksum.
  uint64_t chunk_sum() {
    if (!streamed) return xxh3_64(span, span_len);
    flush_span();
    return XXH3_64bits_digest(hash);
  }

  void close_chunk(Data& batch) {
    if (!chunk_open) return;
    chunk_open = false;
    auto raw_size = static_cast<uint32_t>(chunk_raw);
    if (compression == Compression::None) {
      std::byte header[kHeader];
      fill_chunk_header(header, page_format::kCodeNone, raw_size, raw_size, chunk_sum());
      span_len = 0;  // used
      batch.copy(chunk_start, header, sizeof header, staging_pool);
      stats.stored_bytes = end;
      return;
    }
    // The raw chunk: where it lies together, in the caller's buffer or in raw.
    const std::byte* chunk_src = span;
    if (streamed) {
      flush_span();
      chunk_src = raw.get() + kHeader;
    }
    span_len = 0;  // used, below
    Block out = chunk_pool->take();
    std::byte* dst = out.get() + kHeader;
    size_t capacity = chunk_pool->size() - kHeader;
    size_t n = 0;
    uint8_t code = 0;
    if (compression == Compression::Lz4) {
      int r = LZ4_compress_default(reinterpret_cast<const char*>(chunk_src), reinterpret_cast<char*>(dst),
                                   static_cast<int>(raw_size), static_cast<int>(capacity));
      if (r <= 0) fail("{}: lz4 compression of a {}-byte chunk failed", pages_path.string(), raw_size);
      n = static_cast<size_t>(r);
      code = page_format::kCodeLz4;
    } else {
      size_t r = ZSTD_compressCCtx(zstd, dst, capacity, chunk_src, raw_size, page_format::kZstdLevel);
      if (ZSTD_isError(r)) fail("{}: zstd compression failed: {}", pages_path.string(), ZSTD_getErrorName(r));
      n = r;
      code = page_format::kCodeZstd;
    }
    if (n >= raw_size) {
      // Incompressible: store it raw, so reading it back costs no decompression.
      chunk_pool->give(std::move(out));
      std::byte header[kHeader];
      fill_chunk_header(header, page_format::kCodeNone, raw_size, raw_size, xxh3_64(chunk_src, raw_size));
      if (chunk_src == raw.get() + kHeader) {
        std::memcpy(raw.get(), header, kHeader);
        batch.append(chunk_start, raw.get(), kHeader + raw_size);
        batch.own(std::move(raw), *chunk_pool);
        raw = chunk_pool->take();
      } else {
        batch.copy(chunk_start, header, kHeader, staging_pool);
        batch.append(chunk_start + kHeader, chunk_src, raw_size);
      }
      n = raw_size;
    } else {
      fill_chunk_header(out.get(), code, raw_size, static_cast<uint32_t>(n), xxh3_64(dst, n));
      batch.append(chunk_start, out.get(), kHeader + n);
      batch.own(std::move(out), *chunk_pool);
    }
    end = chunk_start + kHeader + n;
    stats.stored_bytes = end;
  }

  // Adds data pages [vaddr, vaddr + len), len a multiple of the page size.
  void add_data(uint64_t vaddr, const std::byte* p, uint64_t len, Data& batch) {
    while (len > 0) {
      if (!chunk_open) open_chunk();
      uint64_t piece = std::min(len, chunk_size - chunk_raw);
      if (pending && !pending->zero() && !pending->in_parent() && pending->chunk_offset() == chunk_start &&
          pending->vaddr() + pending->nr_pages() * kPageSize == vaddr &&
          pending->offset_in_chunk() + pending->nr_pages() * kPageSize == chunk_raw) {
        pending->set_nr_pages(pending->nr_pages() + piece / kPageSize);
      } else {
        flush_entry();
        pending.emplace();
        pending->set_vaddr(vaddr);
        pending->set_nr_pages(piece / kPageSize);
        pending->set_chunk_offset(chunk_start);
        pending->set_offset_in_chunk(chunk_raw);
      }
      add_piece(p, piece);
      if (compression == Compression::None) {
        if (piece >= kDirectWrite) {
          batch.append(end, p, piece);
        } else {
          batch.copy(end, p, piece, staging_pool);
        }
        end += piece;
      }
      chunk_raw += piece;
      stats.raw_bytes += piece;
      progress::add(piece);  // read by the progress line's own thread
      stats.pages += piece / kPageSize;
      vaddr += piece;
      p += piece;
      len -= piece;
      if (chunk_raw == chunk_size) close_chunk(batch);
    }
  }

  void add_zero(uint64_t vaddr, uint64_t pages) {
    stats.pages += pages;
    stats.zero_pages += pages;
    if (pending && pending->zero() && pending->vaddr() + pending->nr_pages() * kPageSize == vaddr) {
      pending->set_nr_pages(pending->nr_pages() + pages);
      return;
    }
    flush_entry();
    pending.emplace();
    pending->set_vaddr(vaddr);
    pending->set_nr_pages(pages);
    pending->set_zero(true);
  }

  void write_segment(const Data::Segment& s) {
    std::vector<iovec> iov = s.iov;  // pwritev's partial writes move the first entry along
    size_t first = 0;
    uint64_t offset = s.offset;
    while (first < iov.size()) {
      int count = static_cast<int>(std::min(iov.size() - first, kMaxIov));
      ssize_t n = ::pwritev(fd.get(), iov.data() + first, count, static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        fail_errno(errno, "write {} at offset {}", pages_path.string(), offset);
      }
      if (n == 0) fail_errno(EIO, "write {} at offset {}: nothing written", pages_path.string(), offset);
      offset += static_cast<uint64_t>(n);
      auto left = static_cast<size_t>(n);
      while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
      if (left > 0) {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
      }
    }
  }
};

PageWriter::PageWriter(const std::filesystem::path& dir, int64_t id, Compression compression, uint64_t chunk_size)
    : impl_(std::make_unique<Impl>()) {
  Impl& w = *impl_;
  if (chunk_size < kPageSize || chunk_size % kPageSize != 0 || chunk_size > page_format::kMaxChunkSize) {
    fail("page file chunk size {} must be a multiple of {} between {} and {}", chunk_size, kPageSize, kPageSize,
         page_format::kMaxChunkSize);
  }
  w.compression = compression;
  w.chunk_size = chunk_size;
  w.pages_path = dir / image_file_name(ImageType::Pages, id);
  w.fd = open_or_throw(w.pages_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::byte header[format::kFileHeaderSize];
  format::write_file_header(header, ImageType::Pages);
  Batch first;
  first.d_->copy(0, header, sizeof header, w.staging_pool);
  w.write_segment(first.d_->segments.front());
  w.end = sizeof header;
  w.stats.stored_bytes = sizeof header;

  if (compression == Compression::None) {
    w.hash = XXH3_createState();
    if (!w.hash) fail("{}: out of memory for a checksum state", w.pages_path.string());
  } else {
    size_t bound = compression == Compression::Lz4 ? static_cast<size_t>(LZ4_compressBound(static_cast<int>(chunk_size)))
                                                   : ZSTD_compressBound(chunk_size);
    w.chunk_pool = &BlockPool::shared(kHeader + std::max<size_t>(chunk_size, bound));
    w.raw = w.chunk_pool->take();
    if (compression == Compression::Zstd) {
      w.zstd = ZSTD_createCCtx();
      if (!w.zstd) fail("{}: cannot create a zstd context", w.pages_path.string());
    }
  }

  w.pagemap.emplace(dir / image_file_name(ImageType::Pagemap, id), ImageType::Pagemap);
  pb::PagemapHeader ph;
  ph.set_compression(std::string(compression_name(compression)));
  ph.set_page_size(kPageSize);
  ph.set_chunk_size(chunk_size);
  w.pagemap->write(ph);
}

PageWriter::~PageWriter() = default;

void PageWriter::add(uint64_t vaddr, std::span<const std::byte> data) {
  Batch batch;
  encode(vaddr, data, batch);
  write(batch);
}

void PageWriter::encode(uint64_t vaddr, std::span<const std::byte> data, Batch& batch) {
  encode_range(vaddr, data, batch);
  impl_->flush_span();  // data may go away once the batch is written, before the chunk closes
}

void PageWriter::encode(std::span<const Range> ranges, Batch& batch) {
  for (const Range& r : ranges) encode_range(r.vaddr, r.data, batch);
  Impl& w = *impl_;
  if (!batch.d_) batch.d_ = std::make_unique<Batch::Data>();
  w.failed = true;  // until the chunk is closed
  w.close_chunk(*batch.d_);
  w.failed = false;
}

void PageWriter::encode_range(uint64_t vaddr, std::span<const std::byte> data, Batch& batch) {
  Impl& w = *impl_;
  if (w.finished) fail("{}: add after finish", w.pages_path.string());
  if (w.failed) fail("{}: add after an earlier error", w.pages_path.string());
  if (vaddr % kPageSize != 0 || data.size() % kPageSize != 0) {
    fail("{}: range {:#x}+{:#x} is not page-aligned", w.pages_path.string(), vaddr, data.size());
  }
  if (!batch.d_) batch.d_ = std::make_unique<Batch::Data>();
  w.failed = true;  // until this encode() is done
  const std::byte* p = data.data();
  const std::byte* end = p + data.size();
  while (p < end) {
    // One run of pages of the same kind (all zero, or all not).
    bool zero = is_zero_page(p);
    const std::byte* q = p + kPageSize;
    while (q < end && is_zero_page(q) == zero) q += kPageSize;
    uint64_t at = vaddr + static_cast<uint64_t>(p - data.data());
    auto len = static_cast<uint64_t>(q - p);
    if (zero) {
      w.add_zero(at, len / kPageSize);
    } else {
      w.add_data(at, p, len, *batch.d_);
    }
    p = q;
  }
  w.failed = false;
}

void PageWriter::write(Batch& batch) {
  Impl& w = *impl_;
  if (!batch.d_) return;
  Batch::Data& d = *batch.d_;
  try {
    for (const auto& s : d.segments) w.write_segment(s);
  } catch (...) {
    w.failed = true;
    throw;
  }
  for (auto& [block, pool] : d.blocks) pool->give(std::move(block));
  d.blocks.clear();
  d.segments.clear();
  d.staging = nullptr;
  d.staged = 0;
}

void PageWriter::add_in_parent(uint64_t vaddr, uint64_t pages) {
  Impl& w = *impl_;
  if (w.finished) fail("{}: add after finish", w.pages_path.string());
  if (vaddr % kPageSize != 0 || pages == 0) fail("{}: bad in-parent range {:#x}+{} pages", w.pages_path.string(), vaddr, pages);
  w.stats.parent_pages += pages;
  if (w.pending && w.pending->in_parent() && w.pending->vaddr() + w.pending->nr_pages() * kPageSize == vaddr) {
    w.pending->set_nr_pages(w.pending->nr_pages() + pages);
    return;
  }
  w.flush_entry();
  w.pending.emplace();
  w.pending->set_vaddr(vaddr);
  w.pending->set_nr_pages(pages);
  w.pending->set_in_parent(true);
}

void PageWriter::finish() {
  Impl& w = *impl_;
  if (w.finished) return;
  if (w.failed) fail("{}: finish after an earlier error", w.pages_path.string());
  Batch last;
  w.close_chunk(*last.d_);
  write(last);
  w.flush_entry();
  w.stats.stored_bytes = w.end;
  w.pagemap->close();
  int fd = w.fd.release();
  if (::close(fd) < 0) fail_errno(errno, "close {}", w.pages_path.string());
  w.finished = true;
}

const PageStats& PageWriter::stats() const { return impl_->stats; }

}  // namespace stasis::images
