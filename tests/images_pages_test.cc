// Page files: each compression round-trips random, zero, text and scattered ranges;
// adjacent pages coalesce; read_range; damaged chunks are rejected naming file and offset;
// sealed readers catch a file changed after they opened it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/fd.h"
#include "images/page_file.h"
#include "tests/support/test_util.h"

namespace {

namespace fs = std::filesystem;
using stasis::images::Compression;
using stasis::images::PageReader;
using stasis::images::PageWriter;

constexpr uint64_t kPage = 4096;

std::vector<std::byte> random_pages(size_t pages, uint32_t seed) {
  std::vector<std::byte> out(pages * kPage);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < out.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  return out;
}

std::vector<std::byte> text_pages(size_t pages, uint32_t seed) {
  static const char* words[] = {"checkpoint ", "restore ", "page ", "memory ", "stasis ", "the ", "of ", "process\n"};
  std::vector<std::byte> out(pages * kPage);
  std::mt19937 rng(seed);
  size_t at = 0;
  while (at < out.size()) {
    const char* w = words[rng() % 8];
    size_t n = std::min(std::strlen(w), out.size() - at);
    std::memcpy(out.data() + at, w, n);
    at += n;
  }
  return out;
}

// Every saved byte, by address, as for_each returned it.
std::map<uint64_t, std::vector<std::byte>> read_back(const fs::path& dir, int64_t id) {
  PageReader reader(dir, id);
  std::map<uint64_t, std::vector<std::byte>> out;
  reader.for_each([&](uint64_t vaddr, uint64_t length, std::span<const std::byte> data, bool zero) {
    if (zero) {
      EXPECT_TRUE(data.empty());
      out[vaddr] = std::vector<std::byte>(length);
    } else {
      EXPECT_EQ(data.size(), length);
      out[vaddr] = std::vector<std::byte>(data.begin(), data.end());
    }
  });
  return out;
}

std::string slurp_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Flattens adjacent ranges so the comparison does not depend on how they were split.
std::map<uint64_t, std::vector<std::byte>> merge(const std::map<uint64_t, std::vector<std::byte>>& in) {
  std::map<uint64_t, std::vector<std::byte>> out;
  for (const auto& [vaddr, bytes] : in) {
    if (!out.empty()) {
      auto& [last_addr, last] = *out.rbegin();
      if (last_addr + last.size() == vaddr) {
        last.insert(last.end(), bytes.begin(), bytes.end());
        continue;
      }
    }
    out[vaddr] = bytes;
  }
  return out;
}

class PageFileTest : public ::testing::TestWithParam<Compression> {
 protected:
  stasis::test::TempDir tmp{"images-pages"};
};

TEST_P(PageFileTest, MixedRangesRoundTrip) {
  Compression c = GetParam();
  std::map<uint64_t, std::vector<std::byte>> expected;
  // Random, zero, text, and a range that mixes all three page by page; scattered addresses,
  // given out of order; a small chunk size so ranges cross chunks.
  std::vector<std::pair<uint64_t, std::vector<std::byte>>> ranges;
  ranges.emplace_back(0x7f0000000000, random_pages(40, 1));
  ranges.emplace_back(0x400000, std::vector<std::byte>(17 * kPage));
  ranges.emplace_back(0x600000, text_pages(33, 2));
  std::vector<std::byte> mixed = text_pages(12, 3);
  std::memset(mixed.data() + 3 * kPage, 0, 2 * kPage);
  auto rnd = random_pages(2, 4);
  std::memcpy(mixed.data() + 7 * kPage, rnd.data(), rnd.size());
  mixed[11 * kPage + 4095] = std::byte{1};  // a page that is zero but for its last byte
  std::memset(mixed.data() + 11 * kPage, 0, 4095);
  ranges.emplace_back(0x500000, mixed);
  ranges.emplace_back(0x1000, random_pages(1, 5));

  PageWriter writer(tmp.path(), 7, c, 16 * kPage);
  for (const auto& [vaddr, bytes] : ranges) {
    writer.add(vaddr, bytes);
    expected[vaddr] = bytes;
  }
  writer.finish();
  const auto& st = writer.stats();
  EXPECT_EQ(st.pages, (40 + 17 + 33 + 12 + 1));
  EXPECT_EQ(st.zero_pages, 17 + 2);
  EXPECT_EQ(st.raw_bytes, (st.pages - st.zero_pages) * kPage);
  EXPECT_EQ(st.stored_bytes, fs::file_size(tmp.path() / "pages-7.img"));
  if (c == Compression::None) {
    EXPECT_GT(st.stored_bytes, st.raw_bytes);
  } else {
    EXPECT_LT(st.stored_bytes, st.raw_bytes);  // text compresses
  }

  EXPECT_EQ(merge(read_back(tmp.path(), 7)), merge(expected));

  PageReader reader(tmp.path(), 7);
  EXPECT_EQ(reader.header().compression(), std::string(stasis::images::compression_name(c)));
  EXPECT_EQ(reader.header().page_size(), kPage);
  EXPECT_EQ(reader.header().chunk_size(), 16 * kPage);
  // Zero pages are stored as ranges without data.
  uint64_t zero_entries = 0;
  for (const auto& e : reader.entries()) {
    if (e.zero()) {
      ++zero_entries;
      EXPECT_EQ(e.chunk_offset(), 0u);
    }
  }
  EXPECT_EQ(zero_entries, 2u);

  // read_range across zero and data pages, and across chunks.
  auto got = reader.read_range(0x500000 + 2 * kPage + 100, 6 * kPage);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), mixed.begin() + 2 * kPage + 100));
  got = reader.read_range(0x7f0000000000 + 10 * kPage, 20 * kPage);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), ranges[0].second.begin() + 10 * kPage));
  got = reader.read_range(0x400000, 5);
  EXPECT_EQ(got, std::vector<std::byte>(5));
  // Not saved: a hole in the middle or a range running past the end.
  EXPECT_THROW(reader.read_range(0x3000, 16), stasis::Error);
  EXPECT_THROW(reader.read_range(0x600000 + 32 * kPage, 2 * kPage), stasis::Error);
}

// The mapped reader (restore's) gives the same bytes, entry by entry, from several readers at
// once; without data checks it still checks headers.
TEST_P(PageFileTest, MappedReadersGiveTheSameBytes) {
  PageWriter writer(tmp.path(), 8, GetParam(), 16 * kPage);
  auto a = random_pages(40, 21), b = text_pages(50, 22);
  writer.add(0x10000, a);
  writer.add(0x200000, std::vector<std::byte>(3 * kPage));
  writer.add(0x300000, b);
  writer.finish();
  PageReader plain(tmp.path(), 8);
  PageReader mapped(tmp.path(), 8, {.mapped = true, .check_data = true});
  PageReader trusting(tmp.path(), 8, {.mapped = true, .check_data = false});
  ASSERT_EQ(mapped.entries().size(), plain.entries().size());
  size_t data_entries = 0;
  for (size_t i = 0; i < plain.entries().size(); ++i) {
    if (plain.entries()[i].zero()) {
      EXPECT_THROW(mapped.data(i), stasis::Error);
      continue;
    }
    ++data_entries;
    auto want = plain.data(i);
    std::vector<std::byte> expected(want.begin(), want.end());
    auto got = mapped.data(i);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), expected.begin(), expected.end())) << "entry " << i;
    got = trusting.data(i);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), expected.begin(), expected.end())) << "entry " << i;
  }
  EXPECT_GE(data_entries, 2u);
}

TEST_P(PageFileTest, AdjacentPagesCoalesce) {
  Compression c = GetParam();
  auto data = random_pages(64, 9);
  PageWriter writer(tmp.path(), 1, c, 32 * kPage);
  // Adjacent adds, page by page and in pieces: one entry per chunk.
  for (size_t i = 0; i < 8; ++i) writer.add(0x10000 + i * kPage, std::span(data).subspan(i * kPage, kPage));
  writer.add(0x10000 + 8 * kPage, std::span(data).subspan(8 * kPage, 56 * kPage));
  // Adjacent zero runs coalesce too.
  std::vector<std::byte> zeros(4 * kPage);
  writer.add(0x10000 + 64 * kPage, zeros);
  writer.add(0x10000 + 68 * kPage, zeros);
  writer.finish();
  PageReader reader(tmp.path(), 1);
  ASSERT_EQ(reader.entries().size(), 3u);
  EXPECT_EQ(reader.entries()[0].nr_pages(), 32u);
  EXPECT_EQ(reader.entries()[1].nr_pages(), 32u);
  EXPECT_NE(reader.entries()[0].chunk_offset(), reader.entries()[1].chunk_offset());
  EXPECT_TRUE(reader.entries()[2].zero());
  EXPECT_EQ(reader.entries()[2].nr_pages(), 8u);
  auto got = reader.read_range(0x10000, 64 * kPage);
  EXPECT_EQ(got, data);
}

// encode() and write() apart, as a dump runs them on two threads: batches written in reverse
// order, and from another thread, give the same file as add() in order.
TEST_P(PageFileTest, BatchesWrittenOutOfOrderGiveTheSameFile) {
  std::vector<std::pair<uint64_t, std::vector<std::byte>>> ranges;
  ranges.emplace_back(0x10000, random_pages(24, 31));  // spans chunks of 16 pages
  ranges.emplace_back(0x100000, text_pages(7, 32));
  ranges.emplace_back(0x200000, std::vector<std::byte>(5 * kPage));
  ranges.emplace_back(0x300000, random_pages(3, 33));  // a small run: copied, not referenced
  ranges.emplace_back(0x400000, text_pages(40, 34));
  {
    PageWriter in_order(tmp.path(), 1, GetParam(), 16 * kPage);
    for (const auto& [vaddr, bytes] : ranges) in_order.add(vaddr, bytes);
    in_order.finish();
  }
  {
    PageWriter split(tmp.path(), 2, GetParam(), 16 * kPage);
    std::vector<PageWriter::Batch> batches(ranges.size());
    for (size_t i = 0; i < ranges.size(); ++i) split.encode(ranges[i].first, ranges[i].second, batches[i]);
    std::thread writer([&] {
      for (size_t i = batches.size(); i-- > 0;) split.write(batches[i]);
    });
    writer.join();
    for (const auto& b : batches) EXPECT_TRUE(b.empty());
    split.finish();
    EXPECT_EQ(split.stats().stored_bytes, fs::file_size(tmp.path() / "pages-2.img"));
  }
  EXPECT_EQ(slurp_bytes(tmp.path() / "pages-1.img"), slurp_bytes(tmp.path() / "pages-2.img"));
  EXPECT_EQ(merge(read_back(tmp.path(), 2)), merge(read_back(tmp.path(), 1)));
}

// As a dump encodes: each batch is one buffer holding several ranges back to back, encoded in
// one call that closes its chunk, then written, then the buffer is reused for the next batch.
// A chunk's checksum taken in one pass (data together) or piece by piece (zero pages between,
// the chunk split) must be the XXH3-64 of its bytes, taken before the buffer was reused, and
// the single-range encode() must not look at a buffer after its batch is written either.
TEST_P(PageFileTest, BatchesOfRangesCloseTheirChunk) {
  struct Piece {
    uint64_t vaddr;
    std::vector<std::byte> bytes;
  };
  std::vector<std::byte> mixed = random_pages(6, 53);
  std::memset(mixed.data() + 2 * kPage, 0, 2 * kPage);  // zero pages between data pages
  const std::vector<std::vector<Piece>> batches = {
      {{0x10000, random_pages(5, 51)}, {0x20000, text_pages(3, 52)}},  // together: one pass
      {{0x40000, mixed}},                                              // a zero run between
      {{0x80000, random_pages(20, 54)}},                               // over the chunk size: split
      {{0xc0000, std::vector<std::byte>(4 * kPage)}},                  // zero only: no chunk
      {{0xd0000, random_pages(1, 55)}, {0xe0000, random_pages(2, 56)}},
  };
  std::map<uint64_t, std::vector<std::byte>> expected;
  {
    PageWriter writer(tmp.path(), 3, GetParam(), 16 * kPage);
    std::vector<std::byte> buffer(32 * kPage);
    for (const auto& batch : batches) {
      std::vector<PageWriter::Range> ranges;
      size_t at = 0;
      for (const auto& p : batch) {
        std::memcpy(buffer.data() + at, p.bytes.data(), p.bytes.size());
        ranges.push_back({p.vaddr, std::span<const std::byte>(buffer.data() + at, p.bytes.size())});
        at += p.bytes.size();
        expected[p.vaddr] = p.bytes;
      }
      PageWriter::Batch b;
      writer.encode(ranges, b);
      writer.write(b);
      std::memset(buffer.data(), 0xa5, buffer.size());  // the buffer goes on to the next batch
    }
    // The single-range encode(): its chunk stays open across calls and buffers.
    for (uint64_t i = 0; i < 3; ++i) {
      std::vector<std::byte> one = random_pages(5, static_cast<uint32_t>(60 + i));
      expected[0x100000 + i * 5 * kPage] = one;
      PageWriter::Batch b;
      writer.encode(0x100000 + i * 5 * kPage, one, b);
      writer.write(b);
      std::memset(one.data(), 0x5a, one.size());
    }
    writer.finish();
  }
  // Batch by batch: 1, 1 (the zero run does not close it), 2, 0, 1; then 15 pages in chunks of 16.
  stasis::UniqueFd fd(::open((tmp.path() / "pages-3.img").c_str(), O_RDONLY | O_CLOEXEC));
  auto layout = stasis::images::read_page_file_layout(fd.get(), tmp.path() / "pages-3.img");
  EXPECT_EQ(layout.chunks.size(), 6u);
  for (const auto& c : layout.chunks) EXPECT_LE(c.raw_size, 16 * kPage);
  EXPECT_EQ(merge(read_back(tmp.path(), 3)), merge(expected));  // every chunk's checksum checked
}

TEST_P(PageFileTest, EmptyPageFile) {
  PageWriter writer(tmp.path(), 2, GetParam());
  writer.finish();
  EXPECT_TRUE(read_back(tmp.path(), 2).empty());
  EXPECT_EQ(fs::file_size(tmp.path() / "pages-2.img"), 16u);
}

INSTANTIATE_TEST_SUITE_P(Compressions, PageFileTest,
                         ::testing::Values(Compression::None, Compression::Lz4, Compression::Zstd),
                         [](const auto& info) { return std::string(stasis::images::compression_name(info.param)); });

std::string error_of_ctor(const fs::path& dir) {
  return stasis::test::error_of([&] { PageWriter writer(dir, 1, Compression::Lz4); });
}

TEST(PageFile, CompressionNames) {
  EXPECT_EQ(stasis::images::parse_compression("zstd"), Compression::Zstd);
  EXPECT_EQ(stasis::images::parse_compression("lz4"), Compression::Lz4);
  EXPECT_EQ(stasis::images::parse_compression("none"), Compression::None);
  EXPECT_THROW(stasis::images::parse_compression("gzip"), stasis::UsageError);
}

TEST(PageFile, UnalignedRangeIsRefused) {
  stasis::test::TempDir tmp("images-pages");
  PageWriter writer(tmp.path(), 1, Compression::None);
  std::vector<std::byte> data(kPage);
  EXPECT_THROW(writer.add(0x1001, data), stasis::Error);
  EXPECT_THROW(writer.add(0x1000, std::span(data).subspan(0, 100)), stasis::Error);
}

TEST(PageFile, MissingDirectoryNamesThePath) {
  stasis::test::TempDir tmp("images-pages");
  std::string msg = error_of_ctor(tmp.path() / "nodir");
  EXPECT_NE(msg.find((tmp.path() / "nodir" / "pages-1.img").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("ENOENT"), std::string::npos) << msg;
}

// --- damage ---------------------------------------------------------------------------

using stasis::test::error_of;

void flip_byte(const fs::path& p, uint64_t offset) {
  std::fstream f(p, std::ios::binary | std::ios::in | std::ios::out);
  f.seekg(static_cast<std::streamoff>(offset));
  char ch = 0;
  f.get(ch);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(ch ^ 0x20));
}

class PageDamageTest : public ::testing::TestWithParam<Compression> {
 protected:
  stasis::test::TempDir tmp{"images-pages"};
  fs::path pages() const { return tmp.path() / "pages-3.img"; }
  void SetUp() override {
    PageWriter writer(tmp.path(), 3, GetParam(), 8 * kPage);
    writer.add(0x20000, text_pages(20, 11));  // three chunks: 16, 16+32+..., ...
    writer.finish();
  }
  uint64_t second_chunk() {
    PageReader reader(tmp.path(), 3);
    for (const auto& e : reader.entries()) {
      if (e.chunk_offset() != 16) return e.chunk_offset();
    }
    return 0;
  }
  std::string walk() {
    return error_of([&] {
      PageReader reader(tmp.path(), 3);
      reader.for_each([](uint64_t, uint64_t, std::span<const std::byte>, bool) {});
    });
  }
};

TEST_P(PageDamageTest, ChunkDataChecksumMismatch) {
  uint64_t chunk = second_chunk();
  ASSERT_GT(chunk, 16u);
  flip_byte(pages(), chunk + 32 + 10);
  std::string msg = walk();
  EXPECT_NE(msg.find(pages().string() + ": offset " + std::to_string(chunk) + ": chunk: checksum mismatch"),
            std::string::npos)
      << msg;
}

// The same damage through the mapped reader.
TEST_P(PageDamageTest, ChunkDataChecksumMismatchMapped) {
  uint64_t chunk = second_chunk();
  ASSERT_GT(chunk, 16u);
  flip_byte(pages(), chunk + 32 + 10);
  std::string msg = error_of([&] {
    PageReader reader(tmp.path(), 3, {.mapped = true, .check_data = true});
    for (size_t i = 0; i < reader.entries().size(); ++i)
      if (!reader.entries()[i].zero()) reader.data(i);
  });
  EXPECT_NE(msg.find(pages().string() + ": offset " + std::to_string(chunk) + ": chunk: checksum mismatch"),
            std::string::npos)
      << msg;
}

TEST_P(PageDamageTest, ChunkHeaderDamage) {
  flip_byte(pages(), 16 + 9);  // raw size of the first chunk
  std::string msg = walk();
  EXPECT_NE(msg.find(pages().string() + ": offset 16: chunk: header checksum mismatch"), std::string::npos) << msg;
}

TEST_P(PageDamageTest, TruncatedPageFile) {
  uint64_t chunk = second_chunk();
  fs::resize_file(pages(), chunk + 40);
  std::string msg = walk();
  EXPECT_NE(msg.find(pages().string() + ": offset " + std::to_string(chunk) + ": chunk: truncated"), std::string::npos)
      << msg;
  fs::resize_file(pages(), chunk + 5);
  msg = walk();
  EXPECT_NE(msg.find(pages().string() + ": offset " + std::to_string(chunk) + ": chunk: truncated header"),
            std::string::npos)
      << msg;
}

TEST_P(PageDamageTest, WrongFileMagic) {
  flip_byte(pages(), 0);
  std::string msg = walk();
  EXPECT_NE(msg.find(pages().string() + ": offset 0: wrong magic"), std::string::npos) << msg;
}

TEST_P(PageDamageTest, MissingPagemap) {
  fs::remove(tmp.path() / "pagemap-3.img");
  std::string msg = walk();
  EXPECT_NE(msg.find("pagemap-3.img"), std::string::npos) << msg;
}

TEST_P(PageDamageTest, PagemapDamage) {
  flip_byte(tmp.path() / "pagemap-3.img", 40);
  std::string msg = walk();
  EXPECT_NE(msg.find((tmp.path() / "pagemap-3.img").string() + ": offset "), std::string::npos) << msg;
  EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
}

// Any single damaged byte of either file, or any truncation of the page file, is an Error,
// never a crash or silently wrong data. (A pagemap cut exactly at a record boundary reads as
// a shorter pagemap: the inventory's size and checksum are what catch that.)
TEST_P(PageDamageTest, EveryDamagedByteOrTruncationIsCaught) {
  for (const char* name : {"pages-3.img", "pagemap-3.img"}) {
    fs::path p = tmp.path() / name;
    uint64_t size = fs::file_size(p);
    // Every byte of the file header and the first chunk header, then a sample of the rest.
    std::vector<uint64_t> positions;
    for (uint64_t i = 0; i < size; i += (i < 96 ? 1 : 61)) positions.push_back(i);
    for (uint64_t i = size > 40 ? size - 40 : 0; i < size; ++i) positions.push_back(i);
    for (uint64_t i : positions) {
      if (i == 14 || i == 15) continue;  // the file header's reserved field: ignored by design
      flip_byte(p, i);
      EXPECT_NE(walk(), "") << name << " byte " << i;
      flip_byte(p, i);  // and back
    }
    EXPECT_EQ(walk(), "") << name;
  }
  // Shorter and shorter, so each cut leaves a true prefix of the file.
  fs::path p = pages();
  std::vector<uint64_t> lengths;
  for (uint64_t len = 0; len < fs::file_size(p); len += (len < 96 ? 1 : 499)) lengths.push_back(len);
  for (auto it = lengths.rbegin(); it != lengths.rend(); ++it) {
    fs::resize_file(p, *it);
    EXPECT_NE(walk(), "") << "pages file cut at " << *it;
  }
}

INSTANTIATE_TEST_SUITE_P(Compressions, PageDamageTest,
                         ::testing::Values(Compression::None, Compression::Lz4, Compression::Zstd),
                         [](const auto& info) { return std::string(stasis::images::compression_name(info.param)); });

// --- sealed readers (restore's) ------------------------------------------------------------

class SealedReaderTest : public ::testing::TestWithParam<Compression> {
 protected:
  stasis::test::TempDir tmp{"images-sealed"};
  std::vector<std::byte> data = random_pages(20, 41);
  std::vector<std::byte> text = text_pages(12, 42);
  void SetUp() override {
    PageWriter writer(tmp.path(), 5, GetParam(), 8 * kPage);
    writer.add(0x40000, data);
    writer.add(0x80000, std::vector<std::byte>(3 * kPage));
    writer.add(0x100000, text);
    writer.finish();
  }
  fs::path pages() const { return tmp.path() / "pages-5.img"; }
  std::vector<stasis::images::PageChunk> layout() const {
    stasis::UniqueFd fd(::open(pages().c_str(), O_RDONLY | O_CLOEXEC));
    return stasis::images::read_page_file_layout(fd.get(), pages()).chunks;
  }
  std::string seal() const {
    stasis::UniqueFd fd(::open(pages().c_str(), O_RDONLY | O_CLOEXEC));
    return fmt::format("{:016x}", stasis::images::read_page_file_layout(fd.get(), pages()).seal);
  }
  // Every chunk through stream_chunk, by address.
  static std::map<uint64_t, std::vector<std::byte>> stream_all(PageReader& reader) {
    std::map<uint64_t, std::vector<std::byte>> out;
    for (size_t c = 0; c < reader.chunks().size(); ++c)
      reader.stream_chunk(c, [&](uint64_t vaddr, std::span<const std::byte> bytes) {
        out[vaddr].assign(bytes.begin(), bytes.end());
      });
    return out;
  }
};

TEST_P(SealedReaderTest, StreamsWhatForEachReads) {
  auto reader = PageReader::open_sealed(tmp.path(), 5, seal());
  EXPECT_EQ(reader->chunks().size(), layout().size());
  std::vector<std::byte> got_data, got_text;  // the zero range has no chunk
  for (const auto& [vaddr, bytes] : stream_all(*reader)) {
    auto& into = vaddr < 0x100000 ? got_data : got_text;
    into.insert(into.end(), bytes.begin(), bytes.end());
  }
  EXPECT_EQ(got_data, data);
  EXPECT_EQ(got_text, text);
  // Shared readers on other threads read the same.
  std::vector<std::byte> again;
  std::thread t([&] {
    auto other = reader->share();
    for (const auto& [vaddr, bytes] : stream_all(*other))
      if (vaddr < 0x100000) again.insert(again.end(), bytes.begin(), bytes.end());
  });
  t.join();
  EXPECT_EQ(again, data);
}

TEST_P(SealedReaderTest, WrongSealIsRefusedAtOpen) {
  std::string msg = error_of([&] { PageReader::open_sealed(tmp.path(), 5, "0123456789abcdef"); });
  EXPECT_NE(msg.find("chunk headers do not match the inventory"), std::string::npos) << msg;
  EXPECT_NE(msg.find(pages().string()), std::string::npos) << msg;
}

// Data changed after the open fails its chunk, named by offset.
TEST_P(SealedReaderTest, DataChangedAfterTheOpenIsCaught) {
  auto reader = PageReader::open_sealed(tmp.path(), 5, seal());
  const auto chunks = layout();
  const auto& c = chunks[chunks.size() / 2];
  flip_byte(pages(), c.offset + 32 + c.stored_size - 1);
  std::string msg = error_of([&] { stream_all(*reader); });
  EXPECT_NE(msg.find(pages().string() + ": offset " + std::to_string(c.offset) + ": chunk: checksum mismatch"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("changed after it was opened"), std::string::npos) << msg;
}

// A chunk rewritten after the open with a header that matches its new data (what a plain
// reader would accept) still fails: the checksum comes from the headers read at open.
TEST_P(SealedReaderTest, ChunkRewrittenWithAMatchingHeaderIsCaught) {
  auto reader = PageReader::open_sealed(tmp.path(), 5, seal());
  const auto c = layout().front();
  {
    std::fstream f(pages(), std::ios::binary | std::ios::in | std::ios::out);
    std::vector<char> bytes(32 + c.stored_size);
    f.seekg(static_cast<std::streamoff>(c.offset));
    f.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    bytes[32] ^= 0x11;
    const uint64_t data_sum = XXH3_64bits(bytes.data() + 32, c.stored_size);
    std::memcpy(bytes.data() + 16, &data_sum, 8);
    const uint64_t header_sum = XXH3_64bits(bytes.data(), 24);
    std::memcpy(bytes.data() + 24, &header_sum, 8);
    f.seekp(static_cast<std::streamoff>(c.offset));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  EXPECT_EQ(error_of([&] { read_back(tmp.path(), 5); }), "") << "a plain reader takes the rewritten chunk";
  std::string msg = error_of([&] { stream_all(*reader); });
  EXPECT_NE(msg.find(": offset " + std::to_string(c.offset) + ": chunk: checksum mismatch"), std::string::npos)
      << msg;
}

INSTANTIATE_TEST_SUITE_P(Compressions, SealedReaderTest,
                         ::testing::Values(Compression::None, Compression::Lz4, Compression::Zstd),
                         [](const auto& info) { return std::string(stasis::images::compression_name(info.param)); });

}  // namespace
