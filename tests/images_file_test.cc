// Image files: every message kind round-trips; every kind of damage is rejected with an
// error naming the file and the byte offset.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <csignal>
#undef sigmask  // glibc's old macro would swallow ThreadCore::sigmask() in core.pb.h

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>
#include <google/protobuf/util/message_differencer.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cgroup.pb.h"
#include "chardev.pb.h"
#include "common/error.h"
#include "container.pb.h"
#include "core.pb.h"
#include "files.pb.h"
#include "images/image_file.h"
#include "images/image_messages.h"
#include "images/image_type.h"
#include "inventory.pb.h"
#include "mm.pb.h"
#include "namespaces.pb.h"
#include "pagemap.pb.h"
#include "pipe.pb.h"
#include "proto/reflection.h"
#include "pstree.pb.h"
#include "regfile.pb.h"
#include "signals.pb.h"
#include "tests/support/test_util.h"

namespace {

namespace fs = std::filesystem;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using stasis::images::ImageReader;
using stasis::images::ImageType;
using stasis::images::ImageWriter;

// Sets every field of m (recursively, repeated fields twice) to a value that depends on seed,
// so a round trip that drops or mixes up any field shows.
void fill(Message& m, int seed, int depth = 0) {
  const auto* d = m.GetDescriptor();
  const auto* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    int reps = f->is_repeated() ? 2 : 1;
    for (int k = 0; k < reps; ++k) {
      int v = seed * 31 + i * 7 + k + 1;
      auto uv = static_cast<uint64_t>(v);
      bool rep = f->is_repeated();
      if (f->is_map()) {
        Message* entry = r->AddMessage(&m, f);
        fill(*entry, v, depth + 1);
        continue;
      }
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT32:
          rep ? r->AddInt32(&m, f, -v) : r->SetInt32(&m, f, -v);
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          rep ? r->AddInt64(&m, f, -int64_t{v} << 33) : r->SetInt64(&m, f, -int64_t{v} << 33);
          break;
        case FieldDescriptor::CPPTYPE_UINT32:
          rep ? r->AddUInt32(&m, f, 0x80000000u + static_cast<uint32_t>(v)) : r->SetUInt32(&m, f, 0x80000000u + static_cast<uint32_t>(v));
          break;
        case FieldDescriptor::CPPTYPE_UINT64:
          rep ? r->AddUInt64(&m, f, (uv << 40) | 0xfff) : r->SetUInt64(&m, f, (uv << 40) | 0xfff);
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE:
          rep ? r->AddDouble(&m, f, v + 0.25) : r->SetDouble(&m, f, v + 0.25);
          break;
        case FieldDescriptor::CPPTYPE_FLOAT:
          rep ? r->AddFloat(&m, f, v + 0.5f) : r->SetFloat(&m, f, v + 0.5f);
          break;
        case FieldDescriptor::CPPTYPE_BOOL:
          rep ? r->AddBool(&m, f, true) : r->SetBool(&m, f, true);
          break;
        case FieldDescriptor::CPPTYPE_ENUM: {
          const auto* e = f->enum_type();
          const auto* value = e->value(e->value_count() - 1);
          rep ? r->AddEnum(&m, f, value) : r->SetEnum(&m, f, value);
          break;
        }
        case FieldDescriptor::CPPTYPE_STRING: {
          std::string s = f->type() == FieldDescriptor::TYPE_BYTES ? std::string("\x00\xff\x01bytes", 8) : "text";
          s += std::to_string(v);
          rep ? r->AddString(&m, f, s) : r->SetString(&m, f, s);
          break;
        }
        case FieldDescriptor::CPPTYPE_MESSAGE:
          if (depth < 4) fill(rep ? *r->AddMessage(&m, f) : *r->MutableMessage(&m, f), v, depth + 1);
          break;
      }
    }
  }
}

class ImageFileTest : public ::testing::Test {
 protected:
  stasis::test::TempDir tmp{"images-file"};
  fs::path file(const std::string& name) const { return tmp.path() / name; }
};

// Writes three records of a kind and reads them back; they must be equal field by field.
template <typename M>
void round_trip(const fs::path& path, ImageType type) {
  std::vector<M> written(3);
  for (int i = 0; i < 3; ++i) {
    // Our messages are lite: fields are walked on a reflective copy (proto/reflection.h).
    auto all_fields = stasis::pb::to_dynamic(written[i]);
    fill(*all_fields, i + 1);
    ASSERT_TRUE(written[i].ParseFromString(all_fields->SerializeAsString()));
  }
  {
    ImageWriter w(path, type);
    for (const auto& m : written) w.write(m);
    w.close();
  }
  auto read = stasis::images::read_all<M>(path, type);
  ASSERT_EQ(read.size(), written.size()) << path;
  for (size_t i = 0; i < read.size(); ++i) {
    auto got = stasis::pb::to_dynamic(read[i]), want = stasis::pb::to_dynamic(written[i]);
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*got, *want))
        << read[i].GetTypeName() << " record " << i << " differs:\n"
        << got->DebugString() << "\nvs\n"
        << want->DebugString();
  }
}

TEST_F(ImageFileTest, EveryMessageKindRoundTrips) {
  namespace pb = stasis::pb;
  round_trip<pb::Inventory>(file("inventory.img"), ImageType::Inventory);
  round_trip<pb::ImageChecksum>(file("checksums.img"), ImageType::Inventory);
  round_trip<pb::TaskEntry>(file("pstree.img"), ImageType::Pstree);
  round_trip<pb::TaskCore>(file("core-1.img"), ImageType::Core);
  round_trip<pb::ThreadCore>(file("threads.img"), ImageType::Core);
  round_trip<pb::SignalState>(file("signals-1.img"), ImageType::Signals);
  round_trip<pb::MmState>(file("mm-1.img"), ImageType::Mm);
  round_trip<pb::PagemapHeader>(file("pagemap-h.img"), ImageType::Pagemap);
  round_trip<pb::PagemapEntry>(file("pagemap-1.img"), ImageType::Pagemap);
  round_trip<pb::FdEntry>(file("fds-1.img"), ImageType::Fds);
  round_trip<pb::RegFile>(file("regfiles.img"), ImageType::RegFiles);
  round_trip<pb::PipeEnd>(file("pipes.img"), ImageType::Pipes);
  round_trip<pb::PipeData>(file("pipe-data.img"), ImageType::PipeData);
  round_trip<pb::CharDev>(file("chardevs.img"), ImageType::CharDevs);
  round_trip<pb::NamespaceState>(file("namespaces.img"), ImageType::Namespaces);
  round_trip<pb::CgroupState>(file("cgroup.img"), ImageType::Cgroup);
  round_trip<pb::ContainerConfig>(file("container.img"), ImageType::Container);
  round_trip<pb::ContainerState>(file("container-state.img"), ImageType::Container);
}

TEST_F(ImageFileTest, EveryImageTypeHasARecordMessage) {
  for (uint32_t code = 1; code <= 15; ++code) {
    auto type = stasis::images::type_from_code(code);
    ASSERT_TRUE(type) << code;
    auto m = stasis::images::new_record(*type);
    EXPECT_EQ(m == nullptr, *type == ImageType::Pages) << code;
  }
}

TEST_F(ImageFileTest, LargeRecordsAndEmptyFiles) {
  stasis::pb::PipeData big;
  big.set_pipe_id(7);
  big.set_data(std::string(3 << 20, 'x'));  // larger than the writer's buffer
  stasis::pb::PipeData small;
  small.set_pipe_id(8);
  {
    ImageWriter w(file("pipe-data.img"), ImageType::PipeData);
    w.write(small);
    w.write(big);
    w.write(small);
    w.close();
  }
  auto read = stasis::images::read_all<stasis::pb::PipeData>(file("pipe-data.img"), ImageType::PipeData);
  ASSERT_EQ(read.size(), 3u);
  EXPECT_EQ(read[1].data(), big.data());
  EXPECT_EQ(read[2].pipe_id(), 8u);

  {
    ImageWriter w(file("pipes.img"), ImageType::Pipes);
    w.close();
  }
  EXPECT_EQ(fs::file_size(file("pipes.img")), 16u);
  EXPECT_TRUE((stasis::images::read_all<stasis::pb::PipeEnd>(file("pipes.img"), ImageType::Pipes).empty()));
}

TEST_F(ImageFileTest, WriterMovedOrDestroyedStillFlushes) {
  stasis::pb::TaskEntry t;
  t.set_pid(5);
  {
    ImageWriter a(file("a.img"), ImageType::Pstree);
    a.write(t);
    ImageWriter b(file("b.img"), ImageType::Pstree);
    b.write(t);
    b = std::move(a);  // b.img is flushed here, a.img when b goes
  }
  EXPECT_EQ((stasis::images::read_all<stasis::pb::TaskEntry>(file("a.img"), ImageType::Pstree).size()), 1u);
  EXPECT_EQ((stasis::images::read_all<stasis::pb::TaskEntry>(file("b.img"), ImageType::Pstree).size()), 1u);
}

TEST_F(ImageFileTest, SingleRecordImages) {
  stasis::pb::CgroupState c;
  c.set_path("/a/b");
  stasis::images::write_single(file("cgroup.img"), ImageType::Cgroup, c);
  stasis::pb::CgroupState back;
  stasis::images::read_single(file("cgroup.img"), ImageType::Cgroup, back);
  EXPECT_EQ(back.path(), "/a/b");

  {
    ImageWriter w(file("two.img"), ImageType::Cgroup);
    w.write(c);
    w.write(c);
    w.close();
  }
  try {
    stasis::images::read_single(file("two.img"), ImageType::Cgroup, back);
    FAIL() << "two records accepted";
  } catch (const stasis::Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than one"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("two.img: offset " + std::to_string(16 + 12 + c.ByteSizeLong())), std::string::npos) << e.what();
  }
  {
    ImageWriter w(file("none.img"), ImageType::Cgroup);
    w.close();
  }
  try {
    stasis::images::read_single(file("none.img"), ImageType::Cgroup, back);
    FAIL() << "empty image accepted";
  } catch (const stasis::Error& e) {
    EXPECT_NE(std::string(e.what()).find("none.img: offset 16: no stasis.pb.CgroupState record"), std::string::npos)
        << e.what();
  }
}

// --- damage ---------------------------------------------------------------------------

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void spit(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

// Three TaskEntry records; returns the file offset where each record starts.
std::vector<size_t> write_pstree(const fs::path& path) {
  std::vector<size_t> starts;
  ImageWriter w(path, ImageType::Pstree);
  size_t at = 16;
  for (int i = 1; i <= 3; ++i) {
    stasis::pb::TaskEntry t;
    t.set_pid(i);
    t.set_comm("task-" + std::to_string(i));
    starts.push_back(at);
    at += 12 + t.ByteSizeLong();
    w.write(t);
  }
  w.close();
  starts.push_back(at);  // end of file
  return starts;
}

// Reads the whole pstree image and returns the error message (empty if it read fine).
std::string read_error(const fs::path& path, ImageType type = ImageType::Pstree) {
  try {
    stasis::images::read_all<stasis::pb::TaskEntry>(path, type);
  } catch (const stasis::Error& e) {
    return e.what();
  }
  return "";
}

void expect_error(const std::string& message, const fs::path& path, size_t offset, const std::string& what) {
  EXPECT_NE(message.find(path.string() + ": offset " + std::to_string(offset) + ": "), std::string::npos)
      << "message: " << message;
  EXPECT_NE(message.find(what), std::string::npos) << "message: " << message;
}

TEST_F(ImageFileTest, IntactFileReads) {
  auto starts = write_pstree(file("pstree.img"));
  EXPECT_EQ(fs::file_size(file("pstree.img")), starts.back());
  EXPECT_EQ(read_error(file("pstree.img")), "");
}

TEST_F(ImageFileTest, CorruptPayloadByteIsChecksumMismatch) {
  fs::path p = file("pstree.img");
  auto starts = write_pstree(p);
  std::string s = slurp(p);
  s[starts[1] + 12 + 3] ^= 0x40;  // inside the second record's payload
  spit(p, s);
  // The first record still reads; the second throws.
  ImageReader r(p, ImageType::Pstree);
  stasis::pb::TaskEntry t;
  EXPECT_TRUE(r.read(t));
  EXPECT_EQ(t.pid(), 1);
  std::string msg;
  try {
    r.read(t);
  } catch (const stasis::Error& e) {
    msg = e.what();
  }
  expect_error(msg, p, starts[1], "record checksum mismatch");
}

TEST_F(ImageFileTest, CorruptLengthIsCaught) {
  fs::path p = file("pstree.img");
  auto starts = write_pstree(p);
  std::string s = slurp(p);
  s[starts[0]] = static_cast<char>(s[starts[0]] - 1);  // one byte shorter: still within the file
  spit(p, s);
  expect_error(read_error(p), p, starts[0], "checksum mismatch");
}

TEST_F(ImageFileTest, TruncatedPayload) {
  fs::path p = file("pstree.img");
  auto starts = write_pstree(p);
  fs::resize_file(p, starts[3] - 2);
  expect_error(read_error(p), p, starts[2], "truncated record");
}

TEST_F(ImageFileTest, TruncatedRecordHeader) {
  fs::path p = file("pstree.img");
  auto starts = write_pstree(p);
  fs::resize_file(p, starts[2] + 5);
  expect_error(read_error(p), p, starts[2], "truncated record header (5 of 12 bytes)");
}

TEST_F(ImageFileTest, TruncatedFileHeader) {
  fs::path p = file("pstree.img");
  write_pstree(p);
  fs::resize_file(p, 10);
  expect_error(read_error(p), p, 10, "truncated file header");
}

TEST_F(ImageFileTest, WrongMagic) {
  fs::path p = file("pstree.img");
  write_pstree(p);
  std::string s = slurp(p);
  s[0] = 'X';
  spit(p, s);
  expect_error(read_error(p), p, 0, "wrong magic");
}

TEST_F(ImageFileTest, NewerVersionIsRejected) {
  fs::path p = file("pstree.img");
  write_pstree(p);
  std::string s = slurp(p);
  uint32_t v = stasis::images::kFormatVersion + 1;
  std::memcpy(s.data() + 8, &v, 4);
  spit(p, s);
  expect_error(read_error(p), p, 8, "format version 2 is newer than this stasis reads (1)");
}

TEST_F(ImageFileTest, WrongTypeIsRejected) {
  fs::path p = file("pstree.img");
  write_pstree(p);
  expect_error(read_error(p, ImageType::Core), p, 12, "image type 2 (pstree), expected 3 (core)");
}

TEST_F(ImageFileTest, UnparsableMessageIsRejected) {
  // A well-framed record (right checksum) whose payload is not a TaskEntry.
  fs::path p = file("pstree.img");
  {
    ImageWriter w(p, ImageType::Pstree);
    w.close();
  }
  std::string payload = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";  // a varint that never ends
  std::string s = slurp(p);
  uint32_t len = static_cast<uint32_t>(payload.size());
  uint64_t sum = XXH3_64bits_withSeed(payload.data(), payload.size(), payload.size());
  s.append(reinterpret_cast<const char*>(&len), 4);
  s.append(reinterpret_cast<const char*>(&sum), 8);
  s += payload;
  spit(p, s);
  expect_error(read_error(p), p, 16, "cannot parse record as stasis.pb.TaskEntry");
}

TEST_F(ImageFileTest, MissingFileNamesIt) {
  std::string msg = read_error(file("nope.img"));
  EXPECT_NE(msg.find("nope.img"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ENOENT"), std::string::npos) << msg;
}

TEST(ImageNames, FileNamesAndParsing) {
  using stasis::images::image_file_name;
  using stasis::images::parse_image_file_name;
  EXPECT_EQ(image_file_name(ImageType::Inventory), "inventory.img");
  EXPECT_EQ(image_file_name(ImageType::Pstree), "pstree.img");
  EXPECT_EQ(image_file_name(ImageType::Core, 42), "core-42.img");
  EXPECT_EQ(image_file_name(ImageType::Pagemap, 42), "pagemap-42.img");
  EXPECT_EQ(image_file_name(ImageType::Pages, 42), "pages-42.img");
  EXPECT_EQ(image_file_name(ImageType::PipeData), "pipe-data.img");
  for (uint32_t code = 1; code <= 15; ++code) {
    auto type = *stasis::images::type_from_code(code);
    EXPECT_EQ(stasis::images::type_from_name(stasis::images::type_name(type)), type);
    auto plain = parse_image_file_name(image_file_name(type));
    ASSERT_TRUE(plain);
    EXPECT_EQ(plain->type, type);
    EXPECT_FALSE(plain->id);
    auto with_id = parse_image_file_name(image_file_name(type, 1234));
    ASSERT_TRUE(with_id);
    EXPECT_EQ(with_id->type, type);
    EXPECT_EQ(with_id->id, 1234);
  }
  EXPECT_FALSE(parse_image_file_name("weird.img"));
  EXPECT_FALSE(parse_image_file_name("core-.img"));
  EXPECT_FALSE(parse_image_file_name("core-4x.img"));
  EXPECT_FALSE(parse_image_file_name("core-42.txt"));
  EXPECT_FALSE(stasis::images::type_from_code(0));
  EXPECT_FALSE(stasis::images::type_from_code(99));
}

}  // namespace
