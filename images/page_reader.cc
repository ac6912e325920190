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
#include <vector>

#include "common/error.h"
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

struct PageReader::Impl {
  std::filesystem::path pages_path, pagemap_path;
  Options options;
  UniqueFd fd;
  uint64_t file_size = 0;
  const std::byte* mapping = nullptr;  // the whole file, with options.mapped
  pb::PagemapHeader header;
  std::vector<pb::PagemapEntry> entries;
  std::vector<size_t> by_vaddr;  // indexes of entries sorted by vaddr, built on first read_range

  // The chunk in memory.
  bool have_chunk = false;
  uint64_t chunk_offset = 0;
  std::vector<std::byte> stored, raw_buf;
  std::span<const std::byte> raw;
  ZSTD_DCtx* zstd = nullptr;

  ~Impl() {
    if (zstd) ZSTD_freeDCtx(zstd);
    if (mapping) ::munmap(const_cast<std::byte*>(mapping), file_size);
  }

  uint64_t page_size() const { return header.page_size(); }

  [[noreturn]] void chunk_error(uint64_t offset, std::string_view what) const {
    throw Error(format::at(pages_path, offset, fmt::format("chunk: {}", what)));
  }

  void load_chunk(uint64_t offset) {
    if (have_chunk && chunk_offset == offset) return;
    have_chunk = false;
    std::byte h[page_format::kChunkHeaderSize];
    size_t got = pread_full(fd.get(), h, sizeof h, offset, pages_path);
    if (got < sizeof h) chunk_error(offset, fmt::format("truncated header ({} of {} bytes)", got, sizeof h));
    using format::load;
    if (load<uint32_t>(h) != page_format::kChunkMagic) chunk_error(offset, "wrong chunk magic");
    if (load<uint64_t>(h + 24) != XXH3_64bits(h, 24)) chunk_error(offset, "header checksum mismatch");
    uint8_t code = load<uint8_t>(h + 4);
    uint32_t raw_size = load<uint32_t>(h + 8);
    uint32_t stored_size = load<uint32_t>(h + 12);
    uint64_t sum = load<uint64_t>(h + 16);
    if (raw_size > header.chunk_size()) {
      chunk_error(offset, fmt::format("raw size {} is over the chunk size {}", raw_size, header.chunk_size()));
    }
    uint64_t data_at = offset + sizeof h;
    uint64_t left = file_size > data_at ? file_size - data_at : 0;
    if (stored_size > left) {
      chunk_error(offset, fmt::format("truncated: {} stored bytes but only {} left in the file", stored_size, left));
    }
    std::span<const std::byte> data;
    if (mapping) {
      data = std::span<const std::byte>(mapping + data_at, stored_size);
    } else {
      stored.resize(stored_size);
      got = pread_full(fd.get(), stored.data(), stored_size, data_at, pages_path);
      if (got < stored_size) chunk_error(offset, fmt::format("truncated: {} of {} stored bytes", got, stored_size));
      data = stored;
    }
    if (options.check_data) {
      uint64_t actual = XXH3_64bits(data.data(), stored_size);
      if (actual != sum) {
        chunk_error(offset, fmt::format("checksum mismatch (stored {:016x}, computed {:016x})", sum, actual));
      }
    }
    switch (code) {
      case page_format::kCodeNone:
        if (stored_size != raw_size) {
          chunk_error(offset, fmt::format("uncompressed chunk with stored size {} != raw size {}", stored_size,
                                          raw_size));
        }
        raw = data;
        break;
      case page_format::kCodeLz4: {
        raw_buf.resize(raw_size);
        int n = LZ4_decompress_safe(reinterpret_cast<const char*>(data.data()), reinterpret_cast<char*>(raw_buf.data()),
                                    static_cast<int>(stored_size), static_cast<int>(raw_size));
        if (n != static_cast<int>(raw_size)) {
          chunk_error(offset, fmt::format("lz4 data does not decompress to {} bytes (got {})", raw_size, n));
        }
        raw = std::span<const std::byte>(raw_buf.data(), raw_size);
        break;
      }
      case page_format::kCodeZstd: {
        raw_buf.resize(raw_size);
        if (!zstd) zstd = ZSTD_createDCtx();
        if (!zstd) chunk_error(offset, "cannot create a zstd context");
        size_t n = ZSTD_decompressDCtx(zstd, raw_buf.data(), raw_size, data.data(), stored_size);
        if (ZSTD_isError(n)) chunk_error(offset, fmt::format("zstd: {}", ZSTD_getErrorName(n)));
        if (n != raw_size) chunk_error(offset, fmt::format("zstd data decompresses to {} bytes, not {}", n, raw_size));
        raw = std::span<const std::byte>(raw_buf.data(), raw_size);
        break;
      }
      default:
        chunk_error(offset, fmt::format("unknown compression code {}", code));
    }
    chunk_offset = offset;
    have_chunk = true;
  }

  // The raw bytes of a data entry (loading its chunk).
  std::span<const std::byte> entry_data(size_t index) {
    const pb::PagemapEntry& e = entries[index];
    load_chunk(e.chunk_offset());
    uint64_t len = e.nr_pages() * page_size();
    if (e.offset_in_chunk() > raw.size() || len > raw.size() - e.offset_in_chunk()) {
      fail("{}: entry {} ({:#x}, {} pages) lies outside its chunk at offset {} ({} raw bytes)", pagemap_path.string(),
           index, e.vaddr(), e.nr_pages(), e.chunk_offset(), raw.size());
    }
    return raw.subspan(e.offset_in_chunk(), len);
  }
};

PageReader::PageReader(const std::filesystem::path& dir, int64_t id) : PageReader(dir, id, Options{}) {}

PageReader::PageReader(const std::filesystem::path& dir, int64_t id, Options options) : impl_(std::make_unique<Impl>()) {
  Impl& r = *impl_;
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
}

PageReader::~PageReader() = default;

const pb::PagemapHeader& PageReader::header() const { return impl_->header; }
const std::vector<pb::PagemapEntry>& PageReader::entries() const { return impl_->entries; }

void PageReader::for_each(const RangeFn& fn) {
  Impl& r = *impl_;
  for (size_t i = 0; i < r.entries.size(); ++i) {
    const pb::PagemapEntry& e = r.entries[i];
    uint64_t len = e.nr_pages() * r.page_size();
    if (e.zero()) {
      fn(e.vaddr(), len, {}, true);
    } else {
      fn(e.vaddr(), len, r.entry_data(i), false);
    }
  }
}

std::span<const std::byte> PageReader::data(size_t index) {
  Impl& r = *impl_;
  if (index >= r.entries.size() || r.entries[index].zero()) {
    fail("{}: entry {} has no data", r.pagemap_path.string(), index);
  }
  return r.entry_data(index);
}

std::vector<std::byte> PageReader::read_range(uint64_t vaddr, uint64_t length) {
  Impl& r = *impl_;
  if (length > UINT64_MAX - vaddr) fail("{}: range {:#x}+{:#x} overflows", r.pagemap_path.string(), vaddr, length);
  if (r.by_vaddr.size() != r.entries.size()) {
    r.by_vaddr.resize(r.entries.size());
    for (size_t i = 0; i < r.entries.size(); ++i) r.by_vaddr[i] = i;
    std::sort(r.by_vaddr.begin(), r.by_vaddr.end(),
              [&](size_t a, size_t b) { return r.entries[a].vaddr() < r.entries[b].vaddr(); });
  }
  std::vector<std::byte> out(length);
  uint64_t at = vaddr;
  uint64_t end = vaddr + length;
  // First entry that ends after vaddr.
  auto it = std::partition_point(r.by_vaddr.begin(), r.by_vaddr.end(), [&](size_t i) {
    const auto& e = r.entries[i];
    return e.vaddr() + e.nr_pages() * r.page_size() <= vaddr;
  });
  for (; at < end; ++it) {
    if (it == r.by_vaddr.end() || r.entries[*it].vaddr() > at) {
      fail("{}: address {:#x} is not saved (asked for {:#x}+{:#x})", r.pagemap_path.string(), at, vaddr, length);
    }
    const pb::PagemapEntry& e = r.entries[*it];
    uint64_t e_end = e.vaddr() + e.nr_pages() * r.page_size();
    if (e_end <= at) continue;  // only in a pagemap with overlapping ranges
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
