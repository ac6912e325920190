// The migration stream between `stasis migrate` and `stasis serve` (docs/migrate.md): frames
// over one TCP connection (Boost.Asio). A frame is a u8 kind, a u32 length and that many bytes
// of text, a u64 length and that many bytes of payload (little-endian); in key mode the
// payload is sealed (below).
//   HELLO     text "stasis-migrate 1 <mode> <client nonce>" (mode: key or plaintext)
//   CHALLENGE (from serve, key mode) text "<server nonce> <proof>"
//   PROOF     (key mode) text "<proof>"
//   FILE      text = the file's path in the staging folder ("3/pages-1.img"), payload = its bytes
//   RESTORE   text = "<checkpoint folder>\n<container name>"
//   READY     (from serve) everything sent so far arrived and passed its checks; it restores
//             on GO
//   GO        (from migrate) the source job stays frozen from here: restore it
//   RESULT    (from serve) text = "ok" or the reason the restore failed
//
// Key mode (--key FILE, the same file on both sides): each side proves it holds the key with
// an HMAC-SHA256 over both sides' fresh random nonces; every later frame's payload is then
// encrypted and authenticated with AES-256-GCM under a key per direction derived from the
// pre-shared key and both nonces, in pieces of 1 MiB each with its 16-byte tag
// (transport/seal.h); a frame without payload carries the tag of an empty piece. The header
// (kind, text, size) is in the clear and authenticated with each piece. A frame changed,
// dropped, reordered or replayed (from this connection or another) fails a tag, and the
// receiver drops the connection; serve restores only after every frame passed.
//
// TLS mode (--tls-cert, --tls-key, --tls-ca on both sides): the frames go inside TLS (OpenSSL
// through Boost.Asio), each side's certificate checked against the CA given (mutual: serve
// requires the client's). TLS encrypts and carries integrity and replay protection; no tag.
#pragma once

#include <utility>  // std::exchange, which boost/asio/awaitable.hpp uses without including

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "transport/seal.h"

namespace stasis::transport {

using boost::asio::ip::tcp;

enum class FrameKind : uint8_t {
  Hello = 1,
  File = 2,
  Restore = 3,
  Result = 4,
  Challenge = 5,
  Proof = 6,
  Ready = 7,
  Go = 8,
};
inline constexpr std::string_view kProtocol = "stasis-migrate 2";

struct Frame {
  FrameKind kind{};
  std::string text;
  uint64_t payload = 0;  // bytes that follow, for the reader to take
};

// HMAC-SHA256, streaming (OpenSSL).
class Mac {
 public:
  explicit Mac(std::string_view key);
  ~Mac();
  Mac(const Mac&) = delete;
  Mac& operator=(const Mac&) = delete;
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::array<unsigned char, 32> final();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Certificate files for TLS mode.
struct TlsFiles {
  std::filesystem::path cert, key, ca;
};

// --tls-cert, --tls-key, --tls-ca as given: none of them (nullopt), or all three (a usage
// error otherwise).
std::optional<TlsFiles> tls_files(std::string_view command, const std::array<std::string, 3>& given);

// An OpenSSL context with our certificate and key and the CA to check the peer against
// (throws, naming the file, when one does not load).
std::unique_ptr<boost::asio::ssl::context> make_tls_context(const TlsFiles& files, bool server);

class Channel {
 public:
  explicit Channel(tcp::socket socket) : socket_(std::move(socket)) {}
  tcp::socket& socket() { return socket_; }

  // TLS over the socket, before open_*: our certificate and key, the peer's checked against
  // ca (a peer without one, or with one another CA signed, fails the handshake). Throws.
  void start_tls(const TlsFiles& files, bool server);

  // The client's side of the opening: HELLO, then with a key the proofs both ways. Throws
  // when the server does not prove it holds the key.
  void open_client(const std::optional<std::string>& key);
  // The server's: reads HELLO, refuses a client whose mode is not ours or that does not
  // prove it holds the key.
  void open_server(const std::optional<std::string>& key);

  void send_frame(FrameKind kind, std::string_view text);  // no payload
  // A frame with a payload: header, then send_payload() for exactly `size` bytes, then end.
  void begin_frame(FrameKind kind, std::string_view text, uint64_t size);
  void send_payload(const void* data, size_t size);
  void end_frame();

  // Reads a frame's header; a frame without payload is checked here, one with a payload once
  // read_payload() has taken all of it.
  Frame read_frame();
  void read_payload(void* out, size_t size);

  // Every regular file of dir, as FILE frames named prefix/NAME; returns the bytes sent.
  uint64_t send_directory(const std::filesystem::path& dir, const std::string& prefix);
  // The payload of a FILE frame into `to` (created).
  void receive_file(const Frame& frame, const std::filesystem::path& to);

 private:
  void write_all(boost::asio::const_buffer b);
  void read_all(boost::asio::mutable_buffer b);
  void seal_piece(std::span<const std::byte> plain);
  void open_piece(std::byte* into, size_t size);

  tcp::socket socket_;
  std::unique_ptr<boost::asio::ssl::context> tls_context_;
  std::unique_ptr<boost::asio::ssl::stream<tcp::socket&>> tls_;
  // Key mode, once opened: a sealer per direction, the frames' sequence numbers.
  std::unique_ptr<Sealer> send_seal_, recv_seal_;
  uint64_t sent_ = 0, received_ = 0;
  // The frame being sent: its header, payload bytes still to come, the next piece's index and
  // the bytes gathered for it.
  std::string send_header_;
  uint64_t send_left_ = 0;
  uint32_t send_piece_ = 0;
  std::vector<std::byte> send_plain_, send_sealed_;
  // The frame being read: its header, payload bytes not yet read off the wire, the next
  // piece's index, and an opened piece's bytes not yet handed out.
  std::string recv_header_;
  uint64_t recv_unread_ = 0;
  uint32_t recv_piece_ = 0;
  std::vector<std::byte> recv_buf_;
  size_t recv_at_ = 0, recv_end_ = 0;
};

// Keepalive and TCP_USER_TIMEOUT on a connection: a peer that vanishes (a cut link, a host
// gone) fails our reads and writes within about `timeout_s` seconds instead of the kernel's
// 15 minutes of retransmissions, so that the source job is thawed and the destination drops
// what it staged while a person is still watching.
void set_liveness(tcp::socket& socket, unsigned timeout_s);

// Reads a key file: at least 16 bytes.
std::string read_key_file(const std::filesystem::path& path);
// Checks a FILE frame's name: relative, no "..", plain characters.
bool safe_relative_name(std::string_view name);
// "ADDR:PORT" (IPv4, or [IPv6]:PORT).
tcp::endpoint parse_endpoint(std::string_view text, std::string_view option);

}  // namespace stasis::transport
