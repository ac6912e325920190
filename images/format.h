// Internal: the byte layout shared by every image file (see docs/images.md), and the
// little-endian helpers that read and write it. Not part of the public images API.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "images/image_type.h"

namespace stasis::images::format {

static_assert(std::endian::native == std::endian::little, "image files are little-endian; so is this host");

// Every image file starts with these 16 bytes:
//   0  magic "STASIMG\n"
//   8  u32 format version
//  12  u16 image type code
//  14  u16 reserved, written as 0, ignored by readers
inline constexpr char kFileMagic[8] = {'S', 'T', 'A', 'S', 'I', 'M', 'G', '\n'};
inline constexpr size_t kFileHeaderSize = 16;

// Each record of a protobuf image: u32 payload length, u64 XXH3-64 of the payload seeded
// with the length (so a damaged length is caught too), then the payload.
inline constexpr size_t kRecordHeaderSize = 12;
// A record larger than this is refused on both sides (a damaged length must not allocate GiBs).
inline constexpr uint32_t kMaxRecordSize = 512u << 20;

template <typename T>
inline T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
inline void store(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

void write_file_header(std::byte* out, ImageType type);
// Throws an Error naming path and the offset of the bad field: a short header, wrong
// magic, a newer format version, or another image type than expected.
void check_file_header(const std::byte* in, size_t got, const std::filesystem::path& path, ImageType expected);

uint64_t record_checksum(const void* payload, uint32_t length);

// "PATH: offset N: what" -- the form of every format error, so a reader knows where to look.
std::string at(const std::filesystem::path& path, uint64_t offset, std::string_view what);

}  // namespace stasis::images::format
