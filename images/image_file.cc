// Buffered, streaming protobuf image files. Layout in format.h and docs/images.md.
#include "images/image_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/error.h"
#include "common/file_util.h"
#include "images/format.h"

namespace stasis::images {

namespace {
constexpr size_t kBufferSize = 64 << 10;
}

// ---------------------------------------------------------------------------------------
// Writer

struct ImageWriter::Impl {
  std::filesystem::path path;
  UniqueFd fd;
  std::vector<std::byte> buf = std::vector<std::byte>(kBufferSize);
  size_t used = 0;

  void flush() {
    if (used == 0) return;
    write_all(fd.get(), std::span(buf.data(), used), path.string());
    used = 0;
  }

  ~Impl() {
    // Best effort (also when a writer is moved over): errors only surface through close().
    if (!fd) return;
    try {
      flush();
    } catch (const Error&) {
    }
  }
};

ImageWriter::ImageWriter(const std::filesystem::path& path, ImageType type) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->fd = open_or_throw(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  format::write_file_header(impl_->buf.data(), type);
  impl_->used = format::kFileHeaderSize;
}

ImageWriter::~ImageWriter() = default;
ImageWriter::ImageWriter(ImageWriter&&) noexcept = default;
ImageWriter& ImageWriter::operator=(ImageWriter&&) noexcept = default;

void ImageWriter::write(const google::protobuf::MessageLite& message) {
  Impl& w = *impl_;
  if (!w.fd) fail("{}: write after close", w.path.string());
  size_t size = message.ByteSizeLong();
  if (size > format::kMaxRecordSize) {
    fail("{}: {} record of {} bytes is larger than the limit of {}", w.path.string(), message.GetTypeName(), size,
         format::kMaxRecordSize);
  }
  auto length = static_cast<uint32_t>(size);
  size_t total = format::kRecordHeaderSize + size;
  if (w.used + total > w.buf.size()) w.flush();
  if (total <= w.buf.size()) {
    // Serialize straight into the buffer: no intermediate copy for the usual small record.
    std::byte* hdr = w.buf.data() + w.used;
    std::byte* payload = hdr + format::kRecordHeaderSize;
    if (!message.SerializeToArray(payload, static_cast<int>(size))) {
      fail("{}: cannot serialize {}", w.path.string(), message.GetTypeName());
    }
    format::store<uint32_t>(hdr, length);
    format::store<uint64_t>(hdr + 4, format::record_checksum(payload, length));
    w.used += total;
    return;
  }
  std::string payload;
  if (!message.SerializeToString(&payload)) fail("{}: cannot serialize {}", w.path.string(), message.GetTypeName());
  std::byte* hdr = w.buf.data() + w.used;  // the buffer was flushed: the header fits
  format::store<uint32_t>(hdr, length);
  format::store<uint64_t>(hdr + 4, format::record_checksum(payload.data(), length));
  w.used += format::kRecordHeaderSize;
  w.flush();
  write_all(w.fd.get(), std::as_bytes(std::span(payload.data(), payload.size())), w.path.string());
}

void ImageWriter::close() {
  Impl& w = *impl_;
  if (!w.fd) return;
  w.flush();
  int fd = w.fd.release();
  if (::close(fd) < 0) fail_errno(errno, "close {}", w.path.string());
}

// ---------------------------------------------------------------------------------------
// Reader

struct ImageReader::Impl {
  std::filesystem::path path;
  UniqueFd fd;
  uint64_t file_size = 0;
  uint64_t offset = 0;  // file offset of the next byte handed out
  std::vector<std::byte> buf = std::vector<std::byte>(kBufferSize);
  size_t pos = 0, len = 0;        // unread bytes are buf[pos, len)
  std::vector<std::byte> payload;  // reused between records

  // Copies up to n bytes to out; fewer only at end of file.
  size_t take(std::byte* out, size_t n) {
    size_t done = 0;
    while (done < n) {
      if (pos == len) {
        // A large remainder goes straight to out, bypassing the buffer.
        if (n - done >= buf.size()) {
          ssize_t r = ::read(fd.get(), out + done, n - done);
          if (r < 0) {
            if (errno == EINTR) continue;
            fail_errno(errno, "read {}", path.string());
          }
          if (r == 0) break;
          done += static_cast<size_t>(r);
          offset += static_cast<size_t>(r);
          continue;
        }
        ssize_t r = ::read(fd.get(), buf.data(), buf.size());
        if (r < 0) {
          if (errno == EINTR) continue;
          fail_errno(errno, "read {}", path.string());
        }
        if (r == 0) break;
        pos = 0;
        len = static_cast<size_t>(r);
      }
      size_t k = std::min(n - done, len - pos);
      std::memcpy(out + done, buf.data() + pos, k);
      pos += k;
      done += k;
      offset += k;
    }
    return done;
  }
};

ImageReader::ImageReader(const std::filesystem::path& path, ImageType expected) : impl_(std::make_unique<Impl>()) {
  Impl& r = *impl_;
  r.path = path;
  r.fd = open_or_throw(path, O_RDONLY);
  struct stat st {};
  if (::fstat(r.fd.get(), &st) < 0) fail_errno(errno, "stat {}", path.string());
  r.file_size = static_cast<uint64_t>(st.st_size);
  std::byte header[format::kFileHeaderSize];
  size_t got = r.take(header, sizeof header);
  format::check_file_header(header, got, path, expected);
}

ImageReader::~ImageReader() = default;
ImageReader::ImageReader(ImageReader&&) noexcept = default;
ImageReader& ImageReader::operator=(ImageReader&&) noexcept = default;

const std::filesystem::path& ImageReader::path() const { return impl_->path; }
uint64_t ImageReader::offset() const { return impl_->offset; }

bool ImageReader::read(google::protobuf::MessageLite& message) {
  Impl& r = *impl_;
  uint64_t start = r.offset;
  std::byte hdr[format::kRecordHeaderSize];
  size_t got = r.take(hdr, sizeof hdr);
  if (got == 0) return false;
  if (got < sizeof hdr) {
    throw Error(format::at(r.path, start,
                           fmt::format("truncated record header ({} of {} bytes)", got, format::kRecordHeaderSize)));
  }
  uint32_t length = format::load<uint32_t>(hdr);
  uint64_t stored_sum = format::load<uint64_t>(hdr + 4);
  uint64_t left = r.file_size > r.offset ? r.file_size - r.offset : 0;
  if (length > format::kMaxRecordSize && length <= left) {
    throw Error(format::at(r.path, start, fmt::format("record length {} is over the limit of {}", length,
                                                      format::kMaxRecordSize)));
  }
  if (length > left) {
    throw Error(format::at(r.path, start, fmt::format("truncated record: length {} but only {} bytes left", length,
                                                      left)));
  }
  r.payload.resize(length);
  got = r.take(r.payload.data(), length);
  if (got < length) {
    throw Error(format::at(r.path, start, fmt::format("truncated record: {} of {} payload bytes", got, length)));
  }
  uint64_t sum = format::record_checksum(r.payload.data(), length);
  if (sum != stored_sum) {
    throw Error(format::at(r.path, start, fmt::format("record checksum mismatch (stored {:016x}, computed {:016x})",
                                                      stored_sum, sum)));
  }
  if (!message.ParseFromArray(r.payload.data(), static_cast<int>(length))) {
    throw Error(format::at(r.path, start, fmt::format("cannot parse record as {}", message.GetTypeName())));
  }
  return true;
}

void write_single(const std::filesystem::path& path, ImageType type, const google::protobuf::MessageLite& message) {
  ImageWriter writer(path, type);
  writer.write(message);
  writer.close();
}

void read_single(const std::filesystem::path& path, ImageType type, google::protobuf::MessageLite& message) {
  ImageReader reader(path, type);
  if (!reader.read(message)) {
    throw Error(format::at(path, format::kFileHeaderSize, fmt::format("no {} record", message.GetTypeName())));
  }
  std::unique_ptr<google::protobuf::MessageLite> extra(message.New());
  uint64_t second = reader.offset();
  if (reader.read(*extra)) {
    throw Error(format::at(path, second, fmt::format("more than one {} record", message.GetTypeName())));
  }
}

}  // namespace stasis::images
