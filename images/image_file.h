// Protobuf image files: a header (magic, format version, image type) followed by records,
// each a length-delimited protobuf message with its own checksum. Streaming both ways.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include <google/protobuf/message_lite.h>

#include "common/fd.h"
#include "images/image_type.h"

namespace stasis::images {

class ImageWriter {
 public:
  // Creates (truncates) the file and writes the header. Throws Error naming the path.
  ImageWriter(const std::filesystem::path& path, ImageType type);
  ~ImageWriter();
  ImageWriter(ImageWriter&&) noexcept;
  ImageWriter& operator=(ImageWriter&&) noexcept;

  void write(const google::protobuf::MessageLite& message);
  // Flushes and closes; errors surface here (the destructor flushes what it can, silently).
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class ImageReader {
 public:
  // Opens and checks the header: wrong magic, wrong type or a newer format version throw
  // an Error naming the file and the offset.
  ImageReader(const std::filesystem::path& path, ImageType expected);
  ~ImageReader();
  ImageReader(ImageReader&&) noexcept;
  ImageReader& operator=(ImageReader&&) noexcept;

  // Reads the next record into message. Returns false at a clean end of file; throws on a
  // truncated record, a checksum mismatch or an unparsable message (naming file and offset).
  bool read(google::protobuf::MessageLite& message);
  const std::filesystem::path& path() const;
  // File offset of the next record (for error messages of callers).
  uint64_t offset() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Convenience for images that hold exactly one record.
void write_single(const std::filesystem::path& path, ImageType type, const google::protobuf::MessageLite& message);
// Throws if the file holds no record or more than one.
void read_single(const std::filesystem::path& path, ImageType type, google::protobuf::MessageLite& message);

template <typename Message>
std::vector<Message> read_all(const std::filesystem::path& path, ImageType type) {
  ImageReader reader(path, type);
  std::vector<Message> out;
  Message m;
  while (reader.read(m)) out.push_back(std::move(m));
  return out;
}

}  // namespace stasis::images
