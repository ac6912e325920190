// `stasis show`: JSON of a small checkpoint made here, --verify before and after damage,
// --pages hex, and clear failures for a missing directory or an unknown file.
#include <gtest/gtest.h>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "images/checkpoint.h"
#include "images/image_file.h"
#include "images/page_file.h"
#include "pstree.pb.h"
#include "tests/support/test_util.h"

namespace {

namespace fs = std::filesystem;
using stasis::images::Checkpoint;
using stasis::images::ImageType;
using stasis::test::run_stasis;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

class ShowTest : public ::testing::Test {
 protected:
  stasis::test::TempDir tmp{"images-show"};
  fs::path dir() const { return tmp.path() / "cp"; }

  void make(bool with_unknown = false) {
    Checkpoint cp = Checkpoint::create(dir());
    {
      stasis::images::ImageWriter w(cp.path(ImageType::Pstree), ImageType::Pstree);
      stasis::pb::TaskEntry t;
      t.set_pid(1);
      t.set_comm("show-root");
      t.add_tids(1);
      w.write(t);
      t.set_pid(2);
      t.set_ppid(1);
      t.set_comm("show-child");
      w.write(t);
      w.close();
    }
    stasis::images::PageWriter pages(dir(), 1, stasis::images::Compression::Lz4);
    std::vector<std::byte> data(4 * 4096);
    const char text[] = "Hello, stasis!";
    std::memcpy(data.data(), text, sizeof text - 1);
    std::memcpy(data.data() + 3 * 4096, text, sizeof text - 1);  // pages 1 and 2 stay zero
    pages.add(0x10000, data);
    pages.finish();
    if (with_unknown) std::ofstream(dir() / "weird.img") << "?";
    stasis::pb::Inventory inv;
    inv.set_root_pid(1);
    inv.set_compression("lz4");
    cp.finalize(inv);
  }
};

TEST_F(ShowTest, PrintsJsonWithEveryImage) {
  make();
  auto r = run_stasis({"show", dir().string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // One valid JSON document.
  google::protobuf::Value doc;
  auto status = google::protobuf::util::JsonStringToMessage(r.out, &doc);
  ASSERT_TRUE(status.ok()) << status.ToString() << "\n" << r.out;
  const auto& top = doc.struct_value().fields();
  ASSERT_TRUE(top.count("inventory"));
  EXPECT_EQ(top.at("inventory").struct_value().fields().at("format_version").number_value(), 1);
  const auto& images = top.at("images").list_value().values();
  ASSERT_EQ(images.size(), 3);
  // pagemap-1.img, pages-1.img, pstree.img (inventory order).
  const auto& pagemap = images[0].struct_value().fields();
  EXPECT_EQ(pagemap.at("file").string_value(), "pagemap-1.img");
  EXPECT_EQ(pagemap.at("header").struct_value().fields().at("compression").string_value(), "lz4");
  EXPECT_EQ(pagemap.at("records").list_value().values_size(), 3);  // data, zero, data
  const auto& summary = images[1].struct_value().fields().at("summary").struct_value().fields();
  EXPECT_EQ(summary.at("pages").number_value(), 4);
  EXPECT_EQ(summary.at("zero_pages").number_value(), 2);
  EXPECT_EQ(summary.at("raw_bytes").number_value(), 2 * 4096);
  EXPECT_EQ(summary.at("ranges").list_value().values_size(), 1);
  EXPECT_EQ(summary.at("ranges").list_value().values(0).struct_value().fields().at("start").string_value(), "0x10000");
  const auto& pstree = images[2].struct_value().fields();
  EXPECT_EQ(pstree.at("type").string_value(), "pstree");
  ASSERT_EQ(pstree.at("records").list_value().values_size(), 2);
  EXPECT_TRUE(contains(r.out, "\"comm\": \"show-root\"")) << r.out;
  EXPECT_TRUE(contains(r.out, "\"comm\": \"show-child\"")) << r.out;

  auto again = run_stasis({"show", "--json", dir().string()});
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_EQ(again.out, r.out);
}

TEST_F(ShowTest, VerifyPassesThenFailsAfterDamage) {
  make();
  auto r = run_stasis({"show", "--verify", dir().string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "ok")) << r.out;

  {
    std::fstream f(dir() / "pages-1.img", std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(16 + 32 + 2);
    f.put('\x7f');
  }
  r = run_stasis({"show", "--verify", dir().string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "pages-1.img")) << r.err;
  EXPECT_FALSE(contains(r.out, "ok")) << r.out;
}

TEST_F(ShowTest, PagesPrintsHex) {
  make();
  auto r = run_stasis({"show", dir().string(), "--pages", "0x10000:16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "00010000: 4865 6c6c 6f2c 2073 7461 7369 7321 0000  Hello, stasis!..\n");
  // Across the zero pages into the last one, with a short last line.
  r = run_stasis({"show", dir().string(), "--pages", "12ff8:20"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "00012ff8: 0000 0000 0000 0000 4865 6c6c 6f2c 2073  ........Hello, s\n"
            "00013008: 7461 7369                                tasi\n");
  r = run_stasis({"show", dir().string(), "--pages", "0x90000:16"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "0x90000 is not saved")) << r.err;
  r = run_stasis({"show", dir().string(), "--pages", "zz"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

TEST_F(ShowTest, MissingDirectoryExits1NamingIt) {
  auto r = run_stasis({"show", (tmp.path() / "nope").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, (tmp.path() / "nope").string())) << r.err;
  r = run_stasis({"show", "--verify", (tmp.path() / "nope").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, (tmp.path() / "nope").string())) << r.err;
}

TEST_F(ShowTest, UnknownFileExits1NamingIt) {
  make(true);
  auto r = run_stasis({"show", dir().string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "weird.img: unknown image file")) << r.err;
}

TEST_F(ShowTest, CorruptImageExits1NamingIt) {
  make();
  {
    std::fstream f(dir() / "pstree.img", std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(30);
    f.put('\x01');
  }
  auto r = run_stasis({"show", dir().string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "pstree.img: offset 16: record checksum mismatch")) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

}  // namespace
