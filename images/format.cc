#include "images/format.h"

#include <xxhash.h>

#include <fmt/format.h>

#include "common/error.h"

namespace stasis::images::format {

void write_file_header(std::byte* out, ImageType type) {
  std::memcpy(out, kFileMagic, sizeof kFileMagic);
  store<uint32_t>(out + 8, kFormatVersion);
  store<uint16_t>(out + 12, static_cast<uint16_t>(type));
  store<uint16_t>(out + 14, 0);
}

void check_file_header(const std::byte* in, size_t got, const std::filesystem::path& path, ImageType expected) {
  if (got < kFileHeaderSize) {
    throw Error(at(path, got, fmt::format("truncated file header ({} of {} bytes)", got, kFileHeaderSize)));
  }
  if (std::memcmp(in, kFileMagic, sizeof kFileMagic) != 0) {
    throw Error(at(path, 0, "wrong magic: not a stasis image file"));
  }
  uint32_t version = load<uint32_t>(in + 8);
  if (version > kFormatVersion) {
    throw Error(at(path, 8, fmt::format("format version {} is newer than this stasis reads ({})", version,
                                        kFormatVersion)));
  }
  if (version == 0) throw Error(at(path, 8, "format version 0 is not valid"));
  uint16_t code = load<uint16_t>(in + 12);
  if (code != static_cast<uint16_t>(expected)) {
    auto actual = type_from_code(code);
    throw Error(at(path, 12, fmt::format("image type {} ({}), expected {} ({})", code,
                                         actual ? type_name(*actual) : "unknown",
                                         static_cast<uint16_t>(expected), type_name(expected))));
  }
}

uint64_t record_checksum(const void* payload, uint32_t length) {
  return XXH3_64bits_withSeed(payload, length, length);
}

std::string at(const std::filesystem::path& path, uint64_t offset, std::string_view what) {
  return fmt::format("{}: offset {}: {}", path.string(), offset, what);
}

}  // namespace stasis::images::format
