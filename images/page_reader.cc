// PageReader: reads pagemap-<id>.img whole (it is small) and pages-<id>.img one chunk at a
// time, checking each chunk's header and data checksums before decompressing it.
#include <fcntl.h>
#include <lz4.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/free_list.h"
#include "common/fast_hash.h"
#include "common/file_util.h"
#include "images/format.h"
#include "images/image_file.h"
#include "images/page_file.h"
#include "images/page_format.h"

namespace stasis::images {

namespace {

// Reads exactly size bytes at offset, or fewer only at end of file; returns the count.
size_t pread_full(int fd, void* out, size_t size, uint64_t offset, const std::filesystem::path& path) {
  auto* p = static_cast<char*>(out);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, p + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(errno, "read {} at offset {}", path.string(), offset + done);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

}  // namespace

PageFileLayout read_page_file_layout(int fd, const std::filesystem::path& path) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) fail_errno(errno, "stat {}", path.string());
  PageFileLayout out;
  out.size = static_cast<uint64_t>(st.st_size);
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(), &XXH3_freeState);
  if (!state) fail("checksum {}: out of memory", path.string());
  XXH3_64bits_reset(state.get());
  std::byte file_header[format::kFileHeaderSize];
  size_t got = pread_full(fd, file_header, sizeof file_header, 0, path);
  format::check_file_header(file_header, got, path, ImageType::Pages);
  XXH3_64bits_update(state.get(), file_header, sizeof file_header);
  uint64_t offset = sizeof file_header;
  while (offset < out.size) {
    std::byte h[page_format::kChunkHeaderSize];
    auto bad = [&](std::string_view what) { throw Error(format::at(path, offset, fmt::format("chunk: {}", what))); };
    if (out.size - offset < sizeof h) bad("truncated header");
    if (pread_full(fd, h, sizeof h, offset, path) < sizeof h) bad("truncated header");
    using format::load;
    if (load<uint32_t>(h) != page_format::kChunkMagic) bad("wrong magic");
    if (load<uint64_t>(h + 24) != XXH3_64bits(h, 24)) bad("header checksum mismatch");
    PageChunk c{offset, load<uint8_t>(h + 4), load<uint32_t>(h + 8), load<uint32_t>(h + 12), load<uint64_t>(h + 16)};
    if (c.stored_size > out.size - offset - sizeof h) bad("truncated data");
    out.chunks.push_back(c);
    XXH3_64bits_update(state.get(), h, sizeof h);
    offset += sizeof h + c.stored_size;
  }
  out.seal = XXH3_64bits_digest(state.get());
  return out;
}

// What readers of one page file share, read and checked once at open.
struct PageReader::Index {
  std::filesystem::path pages_path, pagemap_path;
  Options options;
  UniqueFd fd;
  uint64_t file_size = 0;
  const std::byte* mapping = nullptr;  // the whole file, with options.mapped
  pb::PagemapHeader header;
  std::vector<pb::PagemapEntry> entries;
  // Sealed readers: the chunk headers checked at open, and the data entries of each.
  bool sealed = false;
  std::vector<PageChunk> chunks;
  std::vector<std::vector<size_t>> chunk_entries;

  ~Index() {
    if (mapping) ::munmap(const_cast<std::byte*>(mapping), file_size);
  }

  [[noreturn]] void chunk_error(uint64_t offset, std::string_view what) const {
    throw Error(format::at(pages_path, offset, fmt::format("chunk: {}", what)));
  }

  // The chunk whose header is at offset, as listed at open (sealed readers).
  const PageChunk& listed_chunk(uint64_t offset) const {
    auto it = std::lower_bound(chunks.begin(), chunks.end(), offset,
                               [](const PageChunk& c, uint64_t o) { return c.offset < o; });
    if (it == chunks.end() || it->offset != offset) chunk_error(offset, "no chunk starts here");
    return *it;
  }

  // Reads every chunk header, checks their seal against the inventory's, and sorts the data
  // entries into their chunks.
  void seal(const std::string& expected) {
    PageFileLayout layout = read_page_file_layout(fd.get(), pages_path);
    const std::string got = fmt::format("{:016x}", layout.seal);
    if (got != expected) {
      fail("{}: chunk headers do not match the inventory (XXH3 {}, the inventory says {}): the file is damaged, or "
           "changed since the dump",
           pages_path.string(), got, expected);
    }
    chunks = std::move(layout.chunks);
    for (const PageChunk& c : chunks) {  // buffers are sized by these
      const bool too_big = c.raw_size > header.chunk_size() ||
                           (c.code != page_format::kCodeNone && c.stored_size > page_format::kMaxChunkSize);
      if (too_big) {
        chunk_error(c.offset, fmt::format("raw size {} or stored size {} is over the chunk size {}", c.raw_size,
                                          c.stored_size, header.chunk_size()));
      }
    }
    chunk_entries.resize(chunks.size());
    for (size_t i = 0; i < entries.size(); ++i) {
      const pb::PagemapEntry& e = entries[i];
      if (e.zero() || e.in_parent()) continue;
      const PageChunk& c = listed_chunk(e.chunk_offset());
      const uint64_t len = e.nr_pages() * header.page_size();
      if (e.offset_in_chunk() > c.raw_size || len > c.raw_size - e.offset_in_chunk()) {
        fail("{}: entry {} ({:#x}, {} pages) lies outside its chunk at offset {} ({} raw bytes)",
             pagemap_path.string(), i, e.vaddr(), e.nr_pages(), e.chunk_offset(), c.raw_size);
      }
      chunk_entries[static_cast<size_t>(&c - chunks.data())].push_back(i);
    }
    for (auto& list : chunk_entries) {
      std::sort(list.begin(), list.end(),
                [&](size_t a, size_t b) { return entries[a].offset_in_chunk() < entries[b].offset_in_chunk(); });
    }
    sealed = true;
  }
};

namespace {

// Chunk buffers outlive their readers: a tree's processes are filled one after another (one
// reader per worker each), and a fresh multi-MiB buffer for each would be faulted in and
// zeroed again (resize zero-fills what it grows). At most a few stay, their size kept.
class ChunkBuffers {
 public:
  static std::vector<std::byte> take() { return spare().take().value_or(std::vector<std::byte>{}); }
  static void give(std::vector<std::byte>&& b) {
    if (b.capacity() != 0) spare().give(b);
  }

 private:
  static FreeList<std::vector<std::byte>>& spare() {
    static FreeList<std::vector<std::byte>> list(4 * std::max(1u, std::thread::hardware_concurrency()));
    return list;
  }
};

}  // namespace

struct PageReader::Impl {
  std::shared_ptr<const Index> ix;
  std::vector<size_t> by_vaddr;  // indexes of entries sorted by vaddr, built on first read_range

  // The chunk in memory.
  bool have_chunk = false;
  uint64_t chunk_offset = 0;
  std::vector<std::byte> stored = ChunkBuffers::take(), raw_buf = ChunkBuffers::take();
  std::span<const std::byte> raw;
  ZSTD_DCtx* zstd = nullptr;

  ~Impl() {
    ChunkBuffers::give(std::move(stored));
    ChunkBuffers::give(std::move(raw_buf));
    if (zstd) ZSTD_freeDCtx(zstd);
  }

  uint64_t page_size() const { return ix->header.page_size(); }

  // n bytes of buf. It only grows: chunks differ in size, and growing zero-fills.
  static std::byte* room(std::vector<std::byte>& buf, size_t n) {
    if (buf.size() < n) buf.resize(n);
    return buf.data();
  }

  [[noreturn]] void chunk_error(uint64_t offset, std::string_view what) const { ix->chunk_error(offset, what); }

  // The chunk's header: as listed at open for a sealed reader, else read and checked now.
  PageChunk chunk_header(uint64_t offset) const {
    if (ix->sealed) return ix->listed_chunk(offset);
    std::byte h[page_format::kChunkHeaderSize];
    size_t got = pread_full(ix->fd.get(), h, sizeof h, offset, ix->pages_path);
    if (got < sizeof h) chunk_error(offset, fmt::format("truncated header ({} of {} bytes)", got, sizeof h));
    using format::load;
    if (load<uint32_t>(h) != page_format::kChunkMagic) chunk_error(offset, "wrong chunk magic");
    if (load<uint64_t>(h + 24) != XXH3_64bits(h, 24)) chunk_error(offset, "header checksum mismatch");
    PageChunk c{offset, load<uint8_t>(h + 4), load<uint32_t>(h + 8), load<uint32_t>(h + 12), load<uint64_t>(h + 16)};
    if (c.raw_size > ix->header.chunk_size()) {
      chunk_error(offset, fmt::format("raw size {} is over the chunk size {}", c.raw_size, ix->header.chunk_size()));
    }
    uint64_t data_at = offset + sizeof h;
    uint64_t left = ix->file_size > data_at ? ix->file_size - data_at : 0;
    if (c.stored_size > left) {
      chunk_error(offset,
                  fmt::format("truncated: {} stored bytes but only {} left in the file", c.stored_size, left));
    }
    return c;
  }

  void checksum_mismatch(const PageChunk& c, uint64_t actual) const {
    chunk_error(c.offset, fmt::format("checksum mismatch (stored {:016x}, computed {:016x}){}", c.sum, actual,
                                      ix->sealed ? ": the file is damaged, or changed after it was opened" : ""));
  }

  void load_chunk(uint64_t offset) {
    if (have_chunk && chunk_offset == offset) return;
    have_chunk = false;
    const PageChunk c = chunk_header(offset);
    const uint64_t data_at = offset + page_format::kChunkHeaderSize;
    std::span<const std::byte> data;
    if (ix->mapping && data_at + c.stored_size <= ix->file_size) {
      data = std::span<const std::byte>(ix->mapping + data_at, c.stored_size);
    } else {
      std::byte* buf = room(stored, c.stored_size);
      size_t got = pread_full(ix->fd.get(), buf, c.stored_size, data_at, ix->pages_path);
      if (got < c.stored_size) chunk_error(offset, fmt::format("truncated: {} of {} stored bytes", got, c.stored_size));
      data = std::span<const std::byte>(buf, c.stored_size);
    }
    if (ix->options.check_data || ix->sealed) {
      uint64_t actual = xxh3_64(data.data(), data.size());
      if (actual != c.sum) checksum_mismatch(c, actual);
    }
    raw = decode(c, data);
    chunk_offset = offset;
    have_chunk = true;
  }

  // The raw bytes of a checked chunk's stored bytes.
  std::span<const std::byte> decode(const PageChunk& c, std::span<const std::byte> data) {
    const uint64_t offset = c.offset;
    const uint32_t raw_size = c.raw_size, stored_size = c.stored_size;
    switch (c.code) {
      case page_format::kCodeNone:
        if (stored_size != raw_size) {
          chunk_error(offset, fmt::format("uncompressed chunk with stored size {} != raw size {}", stored_size,
                                          raw_size));
        }
        return data;
      case page_format::kCodeLz4: {
        room(raw_buf, raw_size);
        int n = LZ4_decompress_safe(reinterpret_cast<const char*>(data.data()), reinterpret_cast<char*>(raw_buf.data()),
                                    static_cast<int>(stored_size), static_cast<int>(raw_size));
        if (n != static_cast<int>(raw_size)) {
          chunk_error(offset, fmt::format("lz4 data does not decompress to {} bytes (got {})", raw_size, n));
        }
        return std::span<const std::byte>(raw_buf.data(), raw_size);
      }
      case page_format::kCodeZstd: {
        room(raw_buf, raw_size);
        if (!zstd) zstd = ZSTD_createDCtx();
        if (!zstd) chunk_error(offset, "cannot create a zstd context");
        size_t n = ZSTD_decompressDCtx(zstd, raw_buf.data(), raw_size, data.data(), stored_size);
        if (ZSTD_isError(n)) chunk_error(offset, fmt::format("zstd: {}", ZSTD_getErrorName(n)));
        if (n != raw_size) chunk_error(offset, fmt::format("zstd data decompresses to {} bytes, not {}", n, raw_size));
        return std::span<const std::byte>(raw_buf.data(), raw_size);
      }
      default:
        chunk_error(offset, fmt::format("unknown compression code {}", c.code));
    }
  }

  // The raw bytes of a data entry (loading its chunk).
  std::span<const std::byte> entry_data(size_t index) {
    const pb::PagemapEntry& e = ix->entries[index];
    load_chunk(e.chunk_offset());
    uint64_t len = e.nr_pages() * page_size();
    if (e.offset_in_chunk() > raw.size() || len > raw.size() - e.offset_in_chunk()) {
      fail("{}: entry {} ({:#x}, {} pages) lies outside its chunk at offset {} ({} raw bytes)",
           ix->pagemap_path.string(), index, e.vaddr(), e.nr_pages(), e.chunk_offset(), raw.size());
    }
    return raw.subspan(e.offset_in_chunk(), len);
  }
};

PageReader::PageReader(const std::filesystem::path& dir, int64_t id) : PageReader(dir, id, Options{}) {}

std::unique_ptr<PageReader> PageReader::open_sealed(const std::filesystem::path& dir, int64_t id,
                                                    const std::string& sealed_xxh3) {
  auto reader = std::make_unique<PageReader>(dir, id, Options{});
  auto ix = std::const_pointer_cast<Index>(reader->impl_->ix);  // not shared with anyone yet
  ix->seal(sealed_xxh3);
  // Chunks are taken by several threads in about file order: read ahead for them.
  ::posix_fadvise(ix->fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  return reader;
}

PageReader::PageReader(const std::filesystem::path& dir, int64_t id, Options options) : impl_(std::make_unique<Impl>()) {
  auto ix = std::make_shared<Index>();
  Index& r = *ix;
  r.options = options;
  r.pagemap_path = dir / image_file_name(ImageType::Pagemap, id);
  r.pages_path = dir / image_file_name(ImageType::Pages, id);

  ImageReader pagemap(r.pagemap_path, ImageType::Pagemap);
  if (!pagemap.read(r.header)) {
    throw Error(format::at(r.pagemap_path, format::kFileHeaderSize, "no PagemapHeader record"));
  }
  uint64_t ps = r.header.page_size();
  if (ps == 0 || (ps & (ps - 1)) != 0) fail("{}: page size {} is not a power of two", r.pagemap_path.string(), ps);
  if (r.header.chunk_size() == 0 || r.header.chunk_size() > page_format::kMaxChunkSize) {
    fail("{}: chunk size {} is not between 1 and {}", r.pagemap_path.string(), r.header.chunk_size(),
         page_format::kMaxChunkSize);
  }
  pb::PagemapEntry e;
  for (;;) {
    uint64_t at = pagemap.offset();
    if (!pagemap.read(e)) break;
    if (e.nr_pages() == 0 || e.nr_pages() > (UINT64_MAX - e.vaddr()) / ps || e.vaddr() % ps != 0) {
      throw Error(format::at(r.pagemap_path, at, fmt::format("bad range {:#x} + {} pages", e.vaddr(), e.nr_pages())));
    }
    r.entries.push_back(e);
  }

  r.fd = open_or_throw(r.pages_path, O_RDONLY);
  struct stat st {};
  if (::fstat(r.fd.get(), &st) < 0) fail_errno(errno, "stat {}", r.pages_path.string());
  r.file_size = static_cast<uint64_t>(st.st_size);
  std::byte fh[format::kFileHeaderSize];
  size_t got = pread_full(r.fd.get(), fh, sizeof fh, 0, r.pages_path);
  format::check_file_header(fh, got, r.pages_path, ImageType::Pages);
  if (options.mapped && r.file_size > 0) {
    void* m = ::mmap(nullptr, r.file_size, PROT_READ, MAP_SHARED, r.fd.get(), 0);
    if (m == MAP_FAILED) fail_errno(errno, "map {}", r.pages_path.string());
    r.mapping = static_cast<const std::byte*>(m);
  }
  impl_->ix = std::move(ix);
}

PageReader::PageReader(std::shared_ptr<const Index> index) : impl_(std::make_unique<Impl>()) {
  impl_->ix = std::move(index);
}

std::unique_ptr<PageReader> PageReader::share() const {
  return std::unique_ptr<PageReader>(new PageReader(impl_->ix));
}

const std::filesystem::path& PageReader::pages_path() const { return impl_->ix->pages_path; }

const std::vector<PageChunk>& PageReader::chunks() const {
  if (!impl_->ix->sealed) fail("{}: chunks are listed by sealed readers only", impl_->ix->pages_path.string());
  return impl_->ix->chunks;
}

const std::vector<size_t>& PageReader::chunk_entries(size_t chunk) const { return impl_->ix->chunk_entries.at(chunk); }

void PageReader::stream_chunk(size_t chunk, const DataFn& fn) {
  Impl& r = *impl_;
  const PageChunk& c = chunks().at(chunk);
  const std::vector<size_t>& list = r.ix->chunk_entries[chunk];
  // The chunk is read whole into this reader's buffer, hashed, decompressed: hashing it in
  // one pass is twice as fast as XXH3's streaming interface over pieces, and 4 MiB stays in
  // the L3 cache for the copy into the job.
  r.load_chunk(c.offset);
  for (size_t i : list) {
    const auto& e = r.ix->entries[i];
    fn(e.vaddr(), r.raw.subspan(e.offset_in_chunk(), e.nr_pages() * r.page_size()));
  }
}

uint64_t PageReader::stream_buffer_bytes() const {
  const Index& ix = *impl_->ix;
  uint64_t stored = 0, raw = 0;  // the largest chunk's, and raw bytes of compressed ones
  for (const auto& c : ix.chunks) {
    stored = std::max<uint64_t>(stored, c.stored_size);
    if (c.code != page_format::kCodeNone) raw = std::max<uint64_t>(raw, c.raw_size);
  }
  return std::max<uint64_t>(stored + raw, 1);
}

PageReader::~PageReader() = default;

const pb::PagemapHeader& PageReader::header() const { return impl_->ix->header; }
const std::vector<pb::PagemapEntry>& PageReader::entries() const { return impl_->ix->entries; }

void PageReader::for_each(const RangeFn& fn) {
  Impl& r = *impl_;
  for (size_t i = 0; i < r.ix->entries.size(); ++i) {
    const pb::PagemapEntry& e = r.ix->entries[i];
    uint64_t len = e.nr_pages() * r.page_size();
    if (e.in_parent()) continue;  // in the parent checkpoint's files
    if (e.zero()) {
      fn(e.vaddr(), len, {}, true);
    } else {
      fn(e.vaddr(), len, r.entry_data(i), false);
    }
  }
}

std::span<const std::byte> PageReader::data(size_t index) {
  Impl& r = *impl_;
  if (index >= r.ix->entries.size() || r.ix->entries[index].zero() || r.ix->entries[index].in_parent()) {
    fail("{}: entry {} has no data", r.ix->pagemap_path.string(), index);
  }
  return r.entry_data(index);
}

std::vector<std::byte> PageReader::read_range(uint64_t vaddr, uint64_t length) {
  Impl& r = *impl_;
  if (length > UINT64_MAX - vaddr) fail("{}: range {:#x}+{:#x} overflows", r.ix->pagemap_path.string(), vaddr, length);
  if (r.by_vaddr.size() != r.ix->entries.size()) {
    r.by_vaddr.resize(r.ix->entries.size());
    for (size_t i = 0; i < r.ix->entries.size(); ++i) r.by_vaddr[i] = i;
    std::sort(r.by_vaddr.begin(), r.by_vaddr.end(),
              [&](size_t a, size_t b) { return r.ix->entries[a].vaddr() < r.ix->entries[b].vaddr(); });
  }
  std::vector<std::byte> out(length);
  uint64_t at = vaddr;
  uint64_t end = vaddr + length;
  // First entry that ends after vaddr.
  auto it = std::partition_point(r.by_vaddr.begin(), r.by_vaddr.end(), [&](size_t i) {
    const auto& e = r.ix->entries[i];
    return e.vaddr() + e.nr_pages() * r.page_size() <= vaddr;
  });
  for (; at < end; ++it) {
    if (it == r.by_vaddr.end() || r.ix->entries[*it].vaddr() > at) {
      fail("{}: address {:#x} is not saved (asked for {:#x}+{:#x})", r.ix->pagemap_path.string(), at, vaddr, length);
    }
    const pb::PagemapEntry& e = r.ix->entries[*it];
    uint64_t e_end = e.vaddr() + e.nr_pages() * r.page_size();
    if (e_end <= at) continue;  // only in a pagemap with overlapping ranges
    if (e.in_parent())
      fail("{}: address {:#x} is saved in the parent checkpoint", r.ix->pagemap_path.string(), at);
    uint64_t take = std::min(end, e_end) - at;
    if (!e.zero()) {
      auto data = r.entry_data(*it);
      std::memcpy(out.data() + (at - vaddr), data.data() + (at - e.vaddr()), take);
    }  // zero entries: out is already zero
    at += take;
  }
  return out;
}

}  // namespace stasis::images
