// Internal: the raw chunk header of pages-<id>.img (see docs/images.md). Not public API.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stasis::images::page_format {

// 32 bytes before each chunk's stored bytes:
//   0  u32 magic "PCHK"
//   4  u8  compression of this chunk (0 none, 1 lz4, 2 zstd)
//   5  u8  reserved (0)
//   6  u16 reserved (0)
//   8  u32 raw size (uncompressed bytes)
//  12  u32 stored size (bytes that follow the header)
//  16  u64 XXH3-64 of the stored bytes
//  24  u64 XXH3-64 of header bytes 0..23
inline constexpr uint32_t kChunkMagic = 0x4b484350;  // "PCHK" little-endian
inline constexpr size_t kChunkHeaderSize = 32;
inline constexpr uint8_t kCodeNone = 0, kCodeLz4 = 1, kCodeZstd = 2;
// Chunks are at most this big uncompressed (sizes are u32 on disk; a damaged header must
// not make a reader allocate more).
inline constexpr uint64_t kMaxChunkSize = 256ull << 20;
// zstd level: fast, since dump speed matters more than the last few percent of size.
inline constexpr int kZstdLevel = 1;

}  // namespace stasis::images::page_format
