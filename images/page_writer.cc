// PageWriter: splits what it is given into zero ranges and data, packs the data into
// chunks of at most chunk_size raw bytes, compresses each chunk on its own and writes it
// with a checksummed header; pagemap entries are streamed to pagemap-<id>.img as ranges end.
//
// Speed matters (this is the bulk of a dump): zero pages are found by comparing 64-bit words
// with an early exit; with compression none, runs of pages are written straight from the
// caller's buffer by one pwritev per add() (only small runs are copied, into a staging
// buffer), and the checksum is computed as the bytes go by, the chunk header being patched
// in place afterwards.
#include <fcntl.h>
#include <lz4.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <cstring>
#include <optional>
#include <vector>

#include "common/error.h"
#include "common/file_util.h"
#include "images/format.h"
#include "images/image_file.h"
#include "images/page_file.h"
#include "images/page_format.h"

namespace stasis::images {

namespace {

constexpr uint64_t kPageSize = 4096;
constexpr size_t kStagingSize = 1 << 20;
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

void pwrite_all(int fd, const void* data, size_t size, uint64_t offset, const std::filesystem::path& path) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::pwrite(fd, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(errno, "write {} at offset {}", path.string(), offset);
    }
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

// What goes next into the file, in order: small pieces copied into a staging buffer, large
// ones referenced where they are; one pwritev writes them all.
class WriteQueue {
 public:
  WriteQueue(int fd, const std::filesystem::path& path, uint64_t offset)
      : fd_(fd), path_(path), written_(offset), staging_(kStagingSize) {}

  uint64_t written() const { return written_; }         // file offset up to which all is written
  uint64_t end() const { return written_ + queued_; }   // file offset after everything queued
  bool has_references() const { return references_; }

  // Copies n bytes into the staging buffer; the returned pointer stays valid until flush().
  std::byte* copy(const void* p, size_t n) {
    if (staged_ + n > staging_.size() || iov_.size() == kMaxIov) flush();
    std::byte* dst = staging_.data() + staged_;
    std::memcpy(dst, p, n);
    if (!iov_.empty() && static_cast<std::byte*>(iov_.back().iov_base) + iov_.back().iov_len == dst) {
      iov_.back().iov_len += n;
    } else {
      iov_.push_back({dst, n});
    }
    staged_ += n;
    queued_ += n;
    return dst;
  }
  // Queues p itself: it must stay valid until flush().
  void reference(const void* p, size_t n) {
    if (iov_.size() == kMaxIov) flush();
    iov_.push_back({const_cast<void*>(p), n});
    queued_ += n;
    references_ = true;
  }

  void flush() {
    size_t first = 0;
    while (first < iov_.size()) {
      int count = static_cast<int>(iov_.size() - first);
      ssize_t n = ::pwritev(fd_, iov_.data() + first, count, static_cast<off_t>(written_));
      if (n < 0) {
        if (errno == EINTR) continue;
        fail_errno(errno, "write {} at offset {}", path_.string(), written_);
      }
      written_ += static_cast<uint64_t>(n);
      queued_ -= static_cast<uint64_t>(n);
      auto left = static_cast<size_t>(n);
      while (first < iov_.size() && left >= iov_[first].iov_len) left -= iov_[first++].iov_len;
      if (left > 0) {
        iov_[first].iov_base = static_cast<char*>(iov_[first].iov_base) + left;
        iov_[first].iov_len -= left;
      }
    }
    iov_.clear();
    staged_ = 0;
    references_ = false;
  }

 private:
  int fd_;
  const std::filesystem::path& path_;
  uint64_t written_;
  uint64_t queued_ = 0;
  std::vector<std::byte> staging_;
  size_t staged_ = 0;
  std::vector<struct iovec> iov_;
  bool references_ = false;
};

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

}  // namespace

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
  std::filesystem::path pages_path;
  UniqueFd fd;
  std::optional<WriteQueue> out_queue;
  std::optional<ImageWriter> pagemap;
  Compression compression;
  uint64_t chunk_size;
  PageStats stats;
  bool finished = false;
  bool failed = false;  // an add() threw: the queue may point at a caller's buffer that is gone

  // The open chunk.
  bool chunk_open = false;
  uint64_t chunk_start = 0;      // file offset of its header
  uint64_t chunk_raw = 0;        // raw bytes in it so far
  std::byte* header_slot = nullptr;  // compression none: its placeholder, while still queued

  // Compression none: running checksum of the chunk's bytes.
  XXH3_state_t* hash = nullptr;

  // lz4/zstd: the raw chunk and room for its compressed form (header first). A chunk filled
  // by one run in one go is compressed straight from the caller's buffer (chunk_src).
  std::vector<std::byte> raw;
  const std::byte* chunk_src = nullptr;
  std::vector<std::byte> out;
  ZSTD_CCtx* zstd = nullptr;

  // The last pagemap range, still growing.
  std::optional<pb::PagemapEntry> pending;

  ~Impl() {
    if (hash) XXH3_freeState(hash);
    if (zstd) ZSTD_freeCCtx(zstd);
  }

  WriteQueue& q() { return *out_queue; }

  void flush_entry() {
    if (pending) pagemap->write(*pending);
    pending.reset();
  }

  void open_chunk() {
    chunk_open = true;
    chunk_start = q().end();
    chunk_raw = 0;
    if (compression == Compression::None) {
      // Queue a placeholder header; it is patched when the chunk closes.
      std::byte zeros[page_format::kChunkHeaderSize] = {};
      header_slot = q().copy(zeros, sizeof zeros);
      XXH3_64bits_reset(hash);
    }
  }

  void close_chunk() {
    if (!chunk_open) return;
    chunk_open = false;
    auto raw_size = static_cast<uint32_t>(chunk_raw);
    std::byte header[page_format::kChunkHeaderSize];
    if (compression == Compression::None) {
      fill_chunk_header(header, page_format::kCodeNone, raw_size, raw_size, XXH3_64bits_digest(hash));
      if (chunk_start >= q().written()) {
        std::memcpy(header_slot, header, sizeof header);  // still queued: patch it there
      } else {
        q().flush();
        pwrite_all(fd.get(), header, sizeof header, chunk_start, pages_path);
      }
      header_slot = nullptr;
      stats.stored_bytes = q().end();
      return;
    }
    std::byte* dst = out.data() + page_format::kChunkHeaderSize;
    size_t capacity = out.size() - page_format::kChunkHeaderSize;
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
      fill_chunk_header(header, page_format::kCodeNone, raw_size, raw_size, XXH3_64bits(chunk_src, raw_size));
      q().copy(header, sizeof header);
      q().reference(chunk_src, raw_size);
    } else {
      fill_chunk_header(out.data(), code, raw_size, static_cast<uint32_t>(n), XXH3_64bits(dst, n));
      q().reference(out.data(), page_format::kChunkHeaderSize + n);
    }
    q().flush();  // raw and out are reused by the next chunk, chunk_src may be the caller's
    chunk_src = raw.data();
    stats.stored_bytes = q().end();
  }

  // Adds data pages [vaddr, vaddr + len), len a multiple of the page size.
  void add_data(uint64_t vaddr, const std::byte* p, uint64_t len) {
    while (len > 0) {
      if (!chunk_open) open_chunk();
      uint64_t piece = std::min(len, chunk_size - chunk_raw);
      if (pending && !pending->zero() && pending->chunk_offset() == chunk_start &&
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
      if (compression == Compression::None) {
        XXH3_64bits_update(hash, p, piece);
        if (piece >= kDirectWrite) {
          q().reference(p, piece);
        } else {
          q().copy(p, piece);
        }
      } else if (chunk_raw == 0 && piece == chunk_size) {
        chunk_src = p;  // the whole chunk at once: closed below, before p can go away
      } else {
        std::memcpy(raw.data() + chunk_raw, p, piece);
      }
      chunk_raw += piece;
      stats.raw_bytes += piece;
      stats.pages += piece / kPageSize;
      vaddr += piece;
      p += piece;
      len -= piece;
      if (chunk_raw == chunk_size) close_chunk();
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
  pwrite_all(w.fd.get(), header, sizeof header, 0, w.pages_path);
  w.out_queue.emplace(w.fd.get(), w.pages_path, sizeof header);
  w.stats.stored_bytes = sizeof header;

  if (compression == Compression::None) {
    w.hash = XXH3_createState();
    if (!w.hash) fail("{}: out of memory for a checksum state", w.pages_path.string());
  } else {
    w.raw.resize(chunk_size);
    w.chunk_src = w.raw.data();
    size_t bound = compression == Compression::Lz4 ? static_cast<size_t>(LZ4_compressBound(static_cast<int>(chunk_size)))
                                                   : ZSTD_compressBound(chunk_size);
    w.out.resize(page_format::kChunkHeaderSize + bound);
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
  Impl& w = *impl_;
  if (w.finished) fail("{}: add after finish", w.pages_path.string());
  if (w.failed) fail("{}: add after an earlier error", w.pages_path.string());
  if (vaddr % kPageSize != 0 || data.size() % kPageSize != 0) {
    fail("{}: range {:#x}+{:#x} is not page-aligned", w.pages_path.string(), vaddr, data.size());
  }
  w.failed = true;  // until this add() is done
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
      w.add_data(at, p, len);
    }
    p = q;
  }
  // The caller's buffer may go away once we return.
  if (w.q().has_references()) w.q().flush();
  w.failed = false;
}

void PageWriter::finish() {
  Impl& w = *impl_;
  if (w.finished) return;
  if (w.failed) fail("{}: finish after an earlier error", w.pages_path.string());
  w.close_chunk();
  w.flush_entry();
  w.q().flush();
  w.stats.stored_bytes = w.q().written();
  w.pagemap->close();
  int fd = w.fd.release();
  if (::close(fd) < 0) fail_errno(errno, "close {}", w.pages_path.string());
  w.finished = true;
}

const PageStats& PageWriter::stats() const { return impl_->stats; }

}  // namespace stasis::images
