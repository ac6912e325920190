// PagePipeline: the page file read on a second thread comes out whole and in order, a bad
// chunk surfaces as an error in the consumer, and a consumer that stops early does not hang.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <vector>

#include "common/error.h"
#include "images/page_file.h"
#include "restore/page_pipeline.h"
#include "tests/support/test_util.h"

namespace stasis::test {
namespace {

constexpr uint64_t kPage = 4096;

// 64 ranges of 16 pages, each page filled with a byte naming it; every 8th range all zero.
void write_pages(const std::filesystem::path& dir) {
  images::PageWriter writer(dir, 1, images::Compression::Lz4, 256 * 1024);
  std::vector<std::byte> buf(16 * kPage);
  for (uint64_t r = 0; r < 64; ++r) {
    for (uint64_t p = 0; p < 16; ++p)
      std::memset(buf.data() + p * kPage, r % 8 == 0 ? 0 : static_cast<int>((r * 16 + p) % 251 + 1), kPage);
    writer.add(0x10000000 + r * 32 * kPage, buf);
  }
  writer.finish();
}

TEST(PagePipeline, DeliversEveryRangeInOrder) {
  TempDir dir;
  write_pages(dir.path());
  restore::PagePipeline pipeline(dir.path(), 1, 2);
  uint64_t data_pages = 0, zero_pages = 0, last = 0;
  while (auto range = pipeline.next()) {
    EXPECT_GE(range->vaddr, last);
    last = range->vaddr;
    if (range->zero) {
      zero_pages += range->length / kPage;
      continue;
    }
    ASSERT_EQ(range->data.size(), range->length);
    for (uint64_t off = 0; off < range->length; off += kPage) {
      const uint64_t page = (range->vaddr + off - 0x10000000) / kPage;
      const uint64_t r = page / 32, p = page % 32;
      ASSERT_EQ(static_cast<int>(range->data[off]), static_cast<int>((r * 16 + p) % 251 + 1)) << page;
    }
    data_pages += range->length / kPage;
    pipeline.recycle(std::move(*range));
  }
  EXPECT_EQ(zero_pages, 8u * 16);
  EXPECT_EQ(data_pages, 56u * 16);
}

TEST(PagePipeline, BadChunkIsReportedToTheConsumer) {
  TempDir dir;
  write_pages(dir.path());
  {
    std::fstream f(dir.path() / "pages-1.img", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.write("XXXXXXXX", 8);
  }
  restore::PagePipeline pipeline(dir.path(), 1);
  std::string error;
  try {
    while (auto range = pipeline.next()) pipeline.recycle(std::move(*range));
  } catch (const Error& e) {
    error = e.what();
  }
  EXPECT_NE(error.find("pages-1.img"), std::string::npos) << error;
  EXPECT_NE(error.find("checksum"), std::string::npos) << error;
}

TEST(PagePipeline, StoppingEarlyDoesNotHang) {
  TempDir dir;
  write_pages(dir.path());
  restore::PagePipeline pipeline(dir.path(), 1, 1);
  ASSERT_TRUE(pipeline.next().has_value());
  // The destructor cancels the reader, which is blocked on the full queue.
}

TEST(PagePipeline, MissingFileIsReportedToTheConsumer) {
  TempDir dir;
  restore::PagePipeline pipeline(dir.path(), 7);
  EXPECT_THROW(pipeline.next(), Error);
}

}  // namespace
}  // namespace stasis::test
