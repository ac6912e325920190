#include "transport/seal.h"

#include <openssl/evp.h>

#include <climits>

#include "common/error.h"

namespace stasis::transport {

namespace {

// 96 bits, as GCM wants: the frame's sequence number, then the piece's index. Never twice
// under one key: each direction has its own key, and sequence numbers only grow.
std::array<unsigned char, 12> iv_of(uint64_t seq, uint32_t index) {
  std::array<unsigned char, 12> iv{};
  for (int i = 0; i < 8; ++i) iv[i] = static_cast<unsigned char>(seq >> (8 * i));
  for (int i = 0; i < 4; ++i) iv[8 + i] = static_cast<unsigned char>(index >> (8 * i));
  return iv;
}

int int_size(size_t n) {
  if (n > INT_MAX) fail("migration stream: a piece of {} bytes is too large to seal", n);
  return static_cast<int>(n);
}

}  // namespace

struct Sealer::Impl {
  EVP_CIPHER_CTX* encrypt = nullptr;
  EVP_CIPHER_CTX* decrypt = nullptr;
  ~Impl() {
    EVP_CIPHER_CTX_free(encrypt);
    EVP_CIPHER_CTX_free(decrypt);
  }
};

Sealer::Sealer(const Key& key) : impl_(std::make_unique<Impl>()) {
  impl_->encrypt = EVP_CIPHER_CTX_new();
  impl_->decrypt = EVP_CIPHER_CTX_new();
  // The key goes in once; each piece then sets only its IV.
  if (!impl_->encrypt || !impl_->decrypt ||
      EVP_EncryptInit_ex(impl_->encrypt, EVP_aes_256_gcm(), nullptr, key.data(), nullptr) != 1 ||
      EVP_DecryptInit_ex(impl_->decrypt, EVP_aes_256_gcm(), nullptr, key.data(), nullptr) != 1)
    fail("OpenSSL: AES-256-GCM init failed");
}

Sealer::~Sealer() = default;

Sealer::Tag Sealer::seal(uint64_t seq, uint32_t index, std::string_view header, std::span<const std::byte> in,
                         std::byte* out) {
  EVP_CIPHER_CTX* ctx = impl_->encrypt;
  const auto iv = iv_of(seq, index);
  int n = 0;
  Tag tag{};
  if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, iv.data()) != 1 ||
      EVP_EncryptUpdate(ctx, nullptr, &n, reinterpret_cast<const unsigned char*>(header.data()),
                        int_size(header.size())) != 1 ||
      (!in.empty() && EVP_EncryptUpdate(ctx, reinterpret_cast<unsigned char*>(out), &n,
                                        reinterpret_cast<const unsigned char*>(in.data()), int_size(in.size())) != 1) ||
      EVP_EncryptFinal_ex(ctx, reinterpret_cast<unsigned char*>(out) + in.size(), &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTag), tag.data()) != 1)
    fail("OpenSSL: AES-256-GCM encryption failed");
  return tag;
}

bool Sealer::open(uint64_t seq, uint32_t index, std::string_view header, std::span<std::byte> data, const Tag& tag) {
  EVP_CIPHER_CTX* ctx = impl_->decrypt;
  const auto iv = iv_of(seq, index);
  Tag expected = tag;  // the ctrl call takes a non-const pointer
  int n = 0;
  auto* bytes = reinterpret_cast<unsigned char*>(data.data());
  if (EVP_DecryptInit_ex(ctx, nullptr, nullptr, nullptr, iv.data()) != 1 ||
      EVP_DecryptUpdate(ctx, nullptr, &n, reinterpret_cast<const unsigned char*>(header.data()),
                        int_size(header.size())) != 1 ||
      (!data.empty() && EVP_DecryptUpdate(ctx, bytes, &n, bytes, int_size(data.size())) != 1) ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTag), expected.data()) != 1)
    fail("OpenSSL: AES-256-GCM decryption failed");
  return EVP_DecryptFinal_ex(ctx, bytes + data.size(), &n) == 1;
}

}  // namespace stasis::transport
