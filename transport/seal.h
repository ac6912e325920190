// Authenticated encryption of the migration stream in key mode (docs/migrate.md): AES-256-GCM
// through OpenSSL, one key per direction. A frame's payload goes in pieces of up to kPiece
// bytes, each sealed on its own: its IV is the frame's sequence number and the piece's index,
// its additional data the frame's header. A piece changed, cut short, moved to another place
// or replayed from another connection (other keys) fails its tag, and the receiver hands out
// no byte of a piece before it passed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace stasis::transport {

class Sealer {
 public:
  static constexpr size_t kPiece = 1 << 20;
  static constexpr size_t kTag = 16;
  using Key = std::array<unsigned char, 32>;
  using Tag = std::array<unsigned char, kTag>;

  explicit Sealer(const Key& key);
  ~Sealer();
  Sealer(const Sealer&) = delete;
  Sealer& operator=(const Sealer&) = delete;

  // Encrypts in into out (the same size; they may be the same bytes) as piece `index` of
  // frame `seq`, whose header is `header`; returns the tag.
  Tag seal(uint64_t seq, uint32_t index, std::string_view header, std::span<const std::byte> in, std::byte* out);
  // Decrypts data in place; false when the tag does not match (data is then garbage).
  bool open(uint64_t seq, uint32_t index, std::string_view header, std::span<std::byte> data, const Tag& tag);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stasis::transport
