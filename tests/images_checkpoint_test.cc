// Checkpoint directories: finalize fills the host fields and lists every file with its
// checksum; open and verify catch missing, modified and corrupt files, naming them.
#include <gtest/gtest.h>
#include <sys/utsname.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/error.h"
#include "common/version.h"
#include "images/checkpoint.h"
#include "images/image_file.h"
#include "images/page_file.h"
#include "pstree.pb.h"
#include "tests/support/test_util.h"

namespace {

namespace fs = std::filesystem;
using stasis::images::Checkpoint;
using stasis::images::ImageType;

using stasis::test::error_of;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

class CheckpointTest : public ::testing::Test {
 protected:
  stasis::test::TempDir tmp{"images-checkpoint"};
  fs::path dir() const { return tmp.path() / "cp"; }

  // A small checkpoint: a pstree, a page file pair, and a file that is not an image.
  void make() {
    Checkpoint cp = Checkpoint::create(dir());
    stasis::pb::TaskEntry t;
    t.set_pid(1);
    t.set_comm("sleeper");
    stasis::images::write_single(cp.path(ImageType::Pstree), ImageType::Pstree, t);
    stasis::images::PageWriter pages(dir(), 1, stasis::images::Compression::Zstd);
    std::vector<std::byte> data(3 * 4096, std::byte{0x5a});
    pages.add(0x10000, data);
    pages.finish();
    std::ofstream(dir() / "extra.bin") << "hello";
    stasis::pb::Inventory inv;
    inv.set_root_pid(1);
    inv.set_compression("zstd");
    cp.finalize(inv);
  }
};

TEST_F(CheckpointTest, FinalizeOpenVerifyRoundTrip) {
  make();
  Checkpoint cp = Checkpoint::open(dir());
  const auto& inv = cp.inventory();
  struct utsname u {};
  ASSERT_EQ(uname(&u), 0);
  EXPECT_EQ(inv.format_version(), stasis::images::kFormatVersion);
  EXPECT_EQ(inv.tool_version(), std::string(stasis::kVersion));
  EXPECT_EQ(inv.kernel_release(), u.release);
  EXPECT_EQ(inv.machine(), u.machine);
  EXPECT_EQ(inv.xsave_features() & 3, 3u) << "x87 and SSE state are always enabled in XCR0";
  EXPECT_GE(inv.xsave_size(), 576u) << "legacy area (512) + XSAVE header (64) at least";
  EXPECT_GT(inv.created_unix_ns(), 1600000000ll * 1000000000ll);
  EXPECT_EQ(inv.page_size(), 4096u);
  EXPECT_EQ(inv.root_pid(), 1);
  EXPECT_EQ(inv.compression(), "zstd");
  ASSERT_EQ(inv.images_size(), 4);
  // Sorted by name, inventory.img itself not listed.
  EXPECT_EQ(inv.images(0).name(), "extra.bin");
  EXPECT_EQ(inv.images(1).name(), "pagemap-1.img");
  EXPECT_EQ(inv.images(2).name(), "pages-1.img");
  EXPECT_EQ(inv.images(3).name(), "pstree.img");
  EXPECT_EQ(inv.images(0).size(), 5u);
  for (const auto& image : inv.images()) {
    EXPECT_EQ(image.size(), fs::file_size(dir() / image.name())) << image.name();
    EXPECT_EQ(image.xxh3().size(), 16u) << image.name();
  }
  EXPECT_FALSE(fs::exists(dir() / "inventory.img.tmp"));
  EXPECT_NO_THROW(cp.verify());
  EXPECT_NO_THROW(cp.verify_file("pstree.img"));
  EXPECT_TRUE(cp.exists(ImageType::Pstree));
  EXPECT_TRUE(cp.exists(ImageType::Pages, 1));
  EXPECT_FALSE(cp.exists(ImageType::Core, 1));
  EXPECT_EQ(cp.path(ImageType::Core, 7), dir() / "core-7.img");
}

TEST_F(CheckpointTest, VerifyCatchesModifiedFile) {
  make();
  {
    std::fstream f(dir() / "pstree.img", std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(20);
    f.put('!');
  }
  Checkpoint cp = Checkpoint::open(dir());
  std::string msg = error_of([&] { cp.verify(); });
  EXPECT_TRUE(contains(msg, "pstree.img checksum mismatch")) << msg;
  EXPECT_TRUE(contains(msg, dir().string())) << msg;
  msg = error_of([&] { cp.verify_file("pstree.img"); });
  EXPECT_TRUE(contains(msg, "pstree.img checksum mismatch")) << msg;
  EXPECT_EQ(error_of([&] { cp.verify_file("pages-1.img"); }), "");
}

// verify checks page data on several threads: a damaged chunk far into a file of many
// chunks is found and named by its offset, and an intact file passes.
TEST_F(CheckpointTest, VerifyFindsADamagedChunkAmongMany) {
  Checkpoint cp = Checkpoint::create(dir());
  {
    stasis::images::PageWriter pages(dir(), 1, stasis::images::Compression::None, 4 * 4096);
    std::vector<std::byte> data(256 * 4096);
    for (size_t i = 0; i < data.size(); ++i) data[i] = std::byte(static_cast<unsigned char>(i * 131 + i / 4096));
    pages.add(0x10000, data);
    pages.finish();
  }
  cp.finalize(stasis::pb::Inventory{});
  EXPECT_NO_THROW(Checkpoint::open(dir()).verify());
  // Chunks are 32 + 4*4096 bytes after the 16-byte file header; damage the data of the 50th.
  const uint64_t chunk = 16 + 49 * (32 + 4 * 4096);
  {
    std::fstream f(dir() / "pages-1.img", std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(chunk + 32 + 1000));
    f.put('!');
  }
  std::string msg = error_of([&] { Checkpoint::open(dir()).verify(); });
  EXPECT_TRUE(contains(msg, "pages-1.img: offset " + std::to_string(chunk) + ": chunk: data checksum mismatch")) << msg;
  // PageData::Later leaves the data to the reader: the headers pass, and the sealed reader of
  // open_pages names the chunk when it reads it.
  Checkpoint cp2 = Checkpoint::open(dir());
  EXPECT_NO_THROW(cp2.verify(Checkpoint::PageData::Later));
  auto reader = cp2.open_pages(1);
  msg = error_of([&] {
    for (size_t c = 0; c < reader->chunks().size(); ++c) reader->stream_chunk(c, [](uint64_t, auto) {});
  });
  EXPECT_TRUE(contains(msg, "pages-1.img: offset " + std::to_string(chunk) + ": chunk: checksum mismatch")) << msg;
  // A damaged header is caught by both, before any data is read.
  {
    std::fstream f(dir() / "pages-1.img", std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(chunk + 16));  // the data checksum in the header
    f.put('!');
  }
  EXPECT_NE(error_of([&] { cp2.verify(Checkpoint::PageData::Later); }), "");
  EXPECT_NE(error_of([&] { cp2.open_pages(1); }), "");
}

TEST_F(CheckpointTest, VerifyCatchesResizedAndMissingFiles) {
  make();
  std::ofstream(dir() / "extra.bin", std::ios::app) << "more";
  Checkpoint cp = Checkpoint::open(dir());
  std::string msg = error_of([&] { cp.verify(); });
  EXPECT_TRUE(contains(msg, "extra.bin has 9 bytes, the inventory says 5")) << msg;
  fs::remove(dir() / "pages-1.img");
  msg = error_of([&] { cp.verify_file("pages-1.img"); });
  EXPECT_TRUE(contains(msg, "pages-1.img is missing")) << msg;
  msg = error_of([&] { cp.verify_file("core-9.img"); });
  EXPECT_TRUE(contains(msg, "core-9.img is not listed in the inventory")) << msg;
}

TEST_F(CheckpointTest, OpenFailsClearly) {
  std::string msg = error_of([&] { Checkpoint::open(tmp.path() / "nowhere"); });
  EXPECT_TRUE(contains(msg, (tmp.path() / "nowhere").string() + " does not exist")) << msg;

  fs::create_directory(dir());
  msg = error_of([&] { Checkpoint::open(dir()); });
  EXPECT_TRUE(contains(msg, dir().string())) << msg;
  EXPECT_TRUE(contains(msg, "no inventory.img")) << msg;

  fs::remove(dir());
  make();
  {
    std::fstream f(dir() / "inventory.img", std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(40);
    f.put('!');
  }
  msg = error_of([&] { Checkpoint::open(dir()); });
  EXPECT_TRUE(contains(msg, "bad inventory")) << msg;
  EXPECT_TRUE(contains(msg, (dir() / "inventory.img").string() + ": offset 16: record checksum mismatch")) << msg;
}

TEST_F(CheckpointTest, CreateRefusesNonEmptyDirectory) {
  fs::create_directory(dir());
  std::ofstream(dir() / "something") << "x";
  std::string msg = error_of([&] { Checkpoint::create(dir()); });
  EXPECT_TRUE(contains(msg, "not empty")) << msg;
  EXPECT_NO_THROW(Checkpoint::create(tmp.path() / "a" / "b"));
  EXPECT_TRUE(fs::is_directory(tmp.path() / "a" / "b"));
}

TEST_F(CheckpointTest, RefinalizeRelistsFiles) {
  make();
  std::ofstream(dir() / "late.bin") << "late";
  Checkpoint cp = Checkpoint::open(dir());
  cp.finalize(cp.inventory());
  Checkpoint again = Checkpoint::open(dir());
  EXPECT_EQ(again.inventory().images_size(), 5);
  EXPECT_NO_THROW(again.verify());
}

}  // namespace
