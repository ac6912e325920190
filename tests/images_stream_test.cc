// 1 GiB of pages streamed through PageWriter and PageReader: memory stays bounded by the
// chunk size (the test makes its data on the fly, so it never holds 1 GiB itself).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "images/page_file.h"
#include "tests/support/test_util.h"

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kBlockPages = 1024;                  // 4 MiB per add()
constexpr uint64_t kBlocks = 256;                       // 1 GiB in all
constexpr uint64_t kBase = 0x7f0000000000;
constexpr uint64_t kBlockStride = (kBlockPages + 16) * kPage;  // a 16-page hole after each block

uint64_t page_addr(uint64_t block, uint64_t page) { return kBase + block * kBlockStride + page * kPage; }

// The content of page `index`: zero, random or text-like, decided by the index alone.
void make_page(uint64_t index, std::byte* out) {
  switch (index % 8) {
    case 0:
    case 1:
      std::memset(out, 0, kPage);
      return;
    case 2:
    case 3:
    case 4: {
      uint64_t x = index * 0x9e3779b97f4a7c15ull + 1;
      for (size_t i = 0; i < kPage; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::memcpy(out + i, &x, 8);
      }
      return;
    }
    default: {
      // A text template, stamped with the index so pages differ.
      static const std::vector<std::byte> text = [] {
        std::vector<std::byte> t(kPage);
        const char phrase[] = "the quick brown fox jumps over the lazy dog; checkpoint me\n";
        for (size_t i = 0; i < kPage; ++i) t[i] = static_cast<std::byte>(phrase[i % (sizeof phrase - 1)]);
        return t;
      }();
      std::memcpy(out, text.data(), kPage);
      for (size_t i = 0; i < kPage; i += 512) std::memcpy(out + i, &index, sizeof index);
      return;
    }
  }
}

uint64_t status_kib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stoull(line.substr(key.size() + 1));
  }
  return 0;
}

class PageStream : public ::testing::TestWithParam<stasis::images::Compression> {};

TEST_P(PageStream, OneGiBWithBoundedMemory) {
  stasis::test::TempDir tmp("images-stream");
  // Reset the peak so earlier allocations of this process do not count.
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  uint64_t base_kib = status_kib("VmHWM");
  auto t0 = std::chrono::steady_clock::now();

  std::vector<std::byte> block(kBlockPages * kPage);
  {
    stasis::images::PageWriter writer(tmp.path(), 1, GetParam());
    for (uint64_t b = 0; b < kBlocks; ++b) {
      for (uint64_t p = 0; p < kBlockPages; ++p) make_page(b * kBlockPages + p, block.data() + p * kPage);
      writer.add(page_addr(b, 0), block);
    }
    writer.finish();
    const auto& st = writer.stats();
    EXPECT_EQ(st.pages, kBlocks * kBlockPages);
    EXPECT_EQ(st.zero_pages, kBlocks * kBlockPages / 4);
    if (GetParam() != stasis::images::Compression::None) {
      EXPECT_LT(st.stored_bytes, st.raw_bytes);
    }
  }
  auto t1 = std::chrono::steady_clock::now();

  uint64_t pages = 0, zero_pages = 0, bad = 0;
  std::vector<std::byte> expected(kPage);
  {
    stasis::images::PageReader reader(tmp.path(), 1);
    reader.for_each([&](uint64_t vaddr, uint64_t length, std::span<const std::byte> data, bool zero) {
      for (uint64_t off = 0; off < length; off += kPage) {
        uint64_t rel = vaddr + off - kBase;
        uint64_t index = rel / kBlockStride * kBlockPages + rel % kBlockStride / kPage;
        make_page(index, expected.data());
        if (zero) {
          ++zero_pages;
          bad += index % 8 > 1;
        } else if (std::memcmp(data.data() + off, expected.data(), kPage) != 0) {
          ++bad;
        }
        ++pages;
      }
    });
  }
  auto t2 = std::chrono::steady_clock::now();
  EXPECT_EQ(pages, kBlocks * kBlockPages);
  EXPECT_EQ(zero_pages, kBlocks * kBlockPages / 4);
  EXPECT_EQ(bad, 0u);

  uint64_t growth_kib = status_kib("VmHWM") - base_kib;
  using ms = std::chrono::milliseconds;
  std::printf("1 GiB %s: write %lld ms, read+check %lld ms, peak RSS growth %llu KiB\n",
              std::string(stasis::images::compression_name(GetParam())).c_str(),
              static_cast<long long>(std::chrono::duration_cast<ms>(t1 - t0).count()),
              static_cast<long long>(std::chrono::duration_cast<ms>(t2 - t1).count()),
              static_cast<unsigned long long>(growth_kib));
  EXPECT_LT(growth_kib, 64u * 1024) << "peak RSS grew by " << growth_kib << " KiB";
}

INSTANTIATE_TEST_SUITE_P(Compressions, PageStream,
                         ::testing::Values(stasis::images::Compression::None, stasis::images::Compression::Lz4),
                         [](const auto& info) { return std::string(stasis::images::compression_name(info.param)); });

}  // namespace
