#include "transport/wire.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <vector>

#include "common/error.h"
#include "common/file_util.h"
#include "common/progress.h"

namespace stasis::transport {

namespace fs = std::filesystem;

namespace {

constexpr uint32_t kMaxText = 1 << 16;
constexpr size_t kPiece = 1 << 20;

template <typename T>
void put(std::string& out, T v) {
  for (size_t i = 0; i < sizeof v; ++i) out += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
}
template <typename T>
T get(const unsigned char* p) {
  uint64_t v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return static_cast<T>(v);
}

std::string hex(const unsigned char* p, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += fmt::format("{:02x}", p[i]);
  return out;
}

std::string nonce() {
  unsigned char n[32];
  if (RAND_bytes(n, sizeof n) != 1) fail("migration: no random bytes for a nonce (OpenSSL RAND_bytes)");
  return hex(n, sizeof n);
}

std::string hmac_hex(const std::string& key, std::initializer_list<std::string_view> parts) {
  Mac mac(key);
  for (auto p : parts) {
    mac.update(p);
    mac.update("\n", 1);
  }
  auto tag = mac.final();
  return hex(tag.data(), tag.size());
}

// A direction's key: HMAC-SHA256 of the pre-shared key over the direction and both nonces.
Sealer::Key session_key(const std::string& key, std::string_view direction, std::string_view cn,
                        std::string_view sn) {
  Mac mac(key);
  for (auto p : {std::string_view("session"), direction, cn, sn}) {
    mac.update(p);
    mac.update("\n", 1);
  }
  return mac.final();
}

bool same(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

struct Mac::Impl {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* ctx = nullptr;
  ~Impl() {
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  }
};

Mac::Mac(std::string_view key) : impl_(std::make_unique<Impl>()) {
  impl_->mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (!impl_->mac) fail("OpenSSL has no HMAC");
  impl_->ctx = EVP_MAC_CTX_new(impl_->mac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
  if (!impl_->ctx ||
      EVP_MAC_init(impl_->ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size(), params) != 1)
    fail("OpenSSL: HMAC-SHA256 init failed");
}
Mac::~Mac() = default;
void Mac::update(const void* data, size_t size) {
  if (EVP_MAC_update(impl_->ctx, static_cast<const unsigned char*>(data), size) != 1) fail("OpenSSL: HMAC update failed");
}
std::array<unsigned char, 32> Mac::final() {
  std::array<unsigned char, 32> out{};
  size_t n = 0;
  if (EVP_MAC_final(impl_->ctx, out.data(), &n, out.size()) != 1 || n != out.size()) fail("OpenSSL: HMAC final failed");
  return out;
}

void Channel::write_all(boost::asio::const_buffer b) {
  if (tls_)
    boost::asio::write(*tls_, b);
  else
    boost::asio::write(socket_, b);
}

void Channel::read_all(boost::asio::mutable_buffer b) {
  if (tls_)
    boost::asio::read(*tls_, b);
  else
    boost::asio::read(socket_, b);
}

std::unique_ptr<boost::asio::ssl::context> make_tls_context(const TlsFiles& files, bool server) {
  namespace ssl = boost::asio::ssl;
  auto context = std::make_unique<ssl::context>(server ? ssl::context::tls_server : ssl::context::tls_client);
  auto& ctx = *context;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  auto load = [&](auto&& step, const fs::path& file, std::string_view what) {
    boost::system::error_code ec;
    step(file.string(), ec);
    if (ec) fail("TLS: {} {}: {}", what, file.string(), ec.message());
  };
  load([&](const std::string& f, auto& ec) { ctx.use_certificate_chain_file(f, ec); }, files.cert, "certificate");
  load([&](const std::string& f, auto& ec) { ctx.use_private_key_file(f, ssl::context::pem, ec); }, files.key,
       "private key");
  load([&](const std::string& f, auto& ec) { ctx.load_verify_file(f, ec); }, files.ca, "CA certificates");
  // Both sides prove themselves: serve requires the client's certificate.
  ctx.set_verify_mode(ssl::verify_peer | (server ? ssl::verify_fail_if_no_peer_cert : 0));
  return context;
}

void Channel::start_tls(const TlsFiles& files, bool server) {
  namespace ssl = boost::asio::ssl;
  tls_context_ = make_tls_context(files, server);
  tls_ = std::make_unique<ssl::stream<tcp::socket&>>(socket_, *tls_context_);
  tls_->handshake(server ? ssl::stream_base::server : ssl::stream_base::client);
}

void Channel::open_client(const std::optional<std::string>& key) {
  const std::string cn = nonce();
  send_frame(FrameKind::Hello, fmt::format("{} {} {}", kProtocol, key ? "key" : tls_ ? "tls" : "plaintext", cn));
  if (!key) return;
  Frame c = read_frame();
  if (c.kind != FrameKind::Challenge) fail("the destination does not take a key (is its serve run with --key?)");
  const size_t sp = c.text.find(' ');
  if (sp == std::string::npos) fail("the destination's challenge is malformed");
  const std::string sn = c.text.substr(0, sp), proof = c.text.substr(sp + 1);
  if (!same(proof, hmac_hex(*key, {"server", cn, sn})))
    fail("the destination does not hold our key (its proof is wrong): nothing was sent");
  send_frame(FrameKind::Proof, hmac_hex(*key, {"client", cn, sn}));
  send_seal_ = std::make_unique<Sealer>(session_key(*key, "to server", cn, sn));
  recv_seal_ = std::make_unique<Sealer>(session_key(*key, "to client", cn, sn));
}

void Channel::open_server(const std::optional<std::string>& key) {
  Frame h = read_frame();
  const std::string want = fmt::format("{} {} ", kProtocol, key ? "key" : tls_ ? "tls" : "plaintext");
  if (h.kind != FrameKind::Hello || h.text.rfind("stasis-migrate ", 0) != 0) fail("not a stasis migration stream");
  if (h.text.rfind(std::string(kProtocol) + " ", 0) != 0)
    fail("the client speaks {}, this serve {}: run the same stasis version on both hosts",
         h.text.substr(0, h.text.find(' ', 15)), kProtocol);
  if (h.text.rfind(want, 0) != 0)
    fail("the client's mode is not ours ({}; this serve runs with {})", h.text.substr(kProtocol.size() + 1),
         key ? "--key" : tls_ ? "TLS" : "--plaintext");
  if (!key) return;
  const std::string cn = h.text.substr(want.size()), sn = nonce();
  send_frame(FrameKind::Challenge, sn + " " + hmac_hex(*key, {"server", cn, sn}));
  Frame p = read_frame();
  if (p.kind != FrameKind::Proof || !same(p.text, hmac_hex(*key, {"client", cn, sn})))
    fail("the client does not hold our key (its proof is wrong)");
  send_seal_ = std::make_unique<Sealer>(session_key(*key, "to client", cn, sn));
  recv_seal_ = std::make_unique<Sealer>(session_key(*key, "to server", cn, sn));
}

void Channel::begin_frame(FrameKind kind, std::string_view text, uint64_t size) {
  std::string out;
  out += static_cast<char>(kind);
  put<uint32_t>(out, static_cast<uint32_t>(text.size()));
  out += text;
  put<uint64_t>(out, size);
  write_all(boost::asio::buffer(out));
  if (!send_seal_) return;
  send_header_ = std::move(out);
  send_left_ = size;
  send_piece_ = 0;
  send_plain_.clear();
}

void Channel::seal_piece(std::span<const std::byte> plain) {
  send_sealed_.resize(plain.size());
  const Sealer::Tag tag = send_seal_->seal(sent_, send_piece_++, send_header_, plain, send_sealed_.data());
  write_all(boost::asio::buffer(send_sealed_.data(), send_sealed_.size()));
  write_all(boost::asio::buffer(tag));
}

void Channel::send_payload(const void* data, size_t size) {
  if (!send_seal_) {
    write_all(boost::asio::buffer(data, size));
    return;
  }
  if (size > send_left_) fail("migration stream: {} bytes sent beyond the frame's announced size", size - send_left_);
  auto in = std::span(static_cast<const std::byte*>(data), size);
  send_left_ -= size;
  // Pieces are whole kPiece bytes but the frame's last: the receiver cuts them the same way.
  while (!in.empty()) {
    const uint64_t from_piece_start = send_plain_.size() + in.size() + send_left_;
    const size_t piece = static_cast<size_t>(std::min<uint64_t>(Sealer::kPiece, from_piece_start));
    if (send_plain_.empty() && in.size() >= piece) {
      seal_piece(in.first(piece));  // straight from the caller's bytes
      in = in.subspan(piece);
      continue;
    }
    const size_t take = std::min(in.size(), piece - send_plain_.size());
    send_plain_.insert(send_plain_.end(), in.begin(), in.begin() + static_cast<ptrdiff_t>(take));
    in = in.subspan(take);
    if (send_plain_.size() == piece) {
      seal_piece(send_plain_);
      send_plain_.clear();
    }
  }
}

void Channel::end_frame() {
  if (!send_seal_) return;
  if (send_left_ != 0 || !send_plain_.empty())
    fail("migration stream: a frame ended {} bytes short of its announced size", send_left_ + send_plain_.size());
  if (send_piece_ == 0) seal_piece({});  // no payload: the tag alone vouches for the header
  ++sent_;
}

void Channel::send_frame(FrameKind kind, std::string_view text) {
  begin_frame(kind, text, 0);
  end_frame();
}

Frame Channel::read_frame() {
  unsigned char head[5];
  read_all(boost::asio::buffer(head));
  Frame f;
  f.kind = static_cast<FrameKind>(head[0]);
  const auto len = get<uint32_t>(head + 1);
  if (len > kMaxText) fail("migration stream: a frame of kind {} announces {} bytes of text", head[0], len);
  f.text.resize(len);
  read_all(boost::asio::buffer(f.text));
  unsigned char size[8];
  read_all(boost::asio::buffer(size));
  f.payload = get<uint64_t>(size);
  if (recv_seal_) {
    recv_header_.assign(reinterpret_cast<const char*>(head), sizeof head);
    recv_header_ += f.text;
    recv_header_.append(reinterpret_cast<const char*>(size), sizeof size);
    recv_unread_ = f.payload;
    recv_piece_ = 0;
    recv_at_ = recv_end_ = 0;
    if (f.payload == 0) {
      open_piece(nullptr, 0);  // the header's own tag
      ++received_;
    }
  }
  return f;
}

// Reads the next piece (size bytes and its tag) into `into` and opens it there; throws when
// its tag is wrong.
void Channel::open_piece(std::byte* into, size_t size) {
  Sealer::Tag tag{};
  if (size) read_all(boost::asio::buffer(into, size));
  read_all(boost::asio::buffer(tag));
  if (!recv_seal_->open(received_, recv_piece_++, recv_header_, std::span(into, size), tag))
    fail("migration stream: a frame failed its authentication tag (changed, replayed or out of order): dropped");
}

void Channel::read_payload(void* out, size_t size) {
  if (!recv_seal_) {
    read_all(boost::asio::buffer(out, size));
    return;
  }
  auto* to = static_cast<std::byte*>(out);
  while (size > 0) {
    if (recv_at_ == recv_end_) {
      if (recv_unread_ == 0) fail("migration stream: {} bytes read beyond the frame's payload", size);
      const size_t piece = static_cast<size_t>(std::min<uint64_t>(Sealer::kPiece, recv_unread_));
      recv_unread_ -= piece;
      if (size >= piece) {
        open_piece(to, piece);  // straight into the caller's bytes: they see none unless it passed
        to += piece;
        size -= piece;
      } else {
        recv_buf_.resize(Sealer::kPiece);
        open_piece(recv_buf_.data(), piece);
        recv_at_ = 0;
        recv_end_ = piece;
      }
    } else {
      const size_t n = std::min(size, recv_end_ - recv_at_);
      std::memcpy(to, recv_buf_.data() + recv_at_, n);
      recv_at_ += n;
      to += n;
      size -= n;
    }
    if (recv_unread_ == 0 && recv_at_ == recv_end_ && size == 0) ++received_;  // the frame is all read
  }
}

uint64_t Channel::send_directory(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  uint64_t total = 0;
  for (const auto& file : files) total += fs::file_size(file);
  // On a terminal, a line that says how far the round has gone (common/progress.h).
  progress::Display display(fmt::format("migrate: send {}", prefix), [total] { return total; });
  uint64_t sent = 0;
  std::vector<char> buf(kPiece);
  for (const auto& file : files) {
    UniqueFd fd = open_or_throw(file, O_RDONLY | O_CLOEXEC);
    const uint64_t size = fs::file_size(file);
    begin_frame(FrameKind::File, prefix + "/" + file.filename().string(), size);
    for (uint64_t done = 0; done < size;) {
      ssize_t n = ::read(fd.get(), buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), size - done)));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail_errno(n < 0 ? errno : EIO, "read {}", file.string());
      send_payload(buf.data(), static_cast<size_t>(n));
      done += static_cast<uint64_t>(n);
      progress::add(static_cast<uint64_t>(n));
    }
    end_frame();
    sent += size;
  }
  return sent;
}

void Channel::receive_file(const Frame& frame, const fs::path& to) {
  fs::create_directories(to.parent_path());
  UniqueFd fd = open_or_throw(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  std::vector<char> buf(kPiece);
  for (uint64_t done = 0; done < frame.payload;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), frame.payload - done));
    read_payload(buf.data(), n);
    stasis::write_all(fd.get(), std::as_bytes(std::span(buf.data(), n)), to.string());
    done += n;
  }
}

std::optional<TlsFiles> tls_files(std::string_view command, const std::array<std::string, 3>& given) {
  const int n = !given[0].empty() + !given[1].empty() + !given[2].empty();
  if (n == 0) return std::nullopt;
  if (n != 3)
    throw UsageError(fmt::format("{}: TLS needs all of --tls-cert, --tls-key and --tls-ca", command));
  for (const auto& f : given)
    if (!fs::is_regular_file(f)) throw UsageError(fmt::format("{}: {}: no such file", command, f));
  return TlsFiles{given[0], given[1], given[2]};
}

void set_liveness(tcp::socket& socket, unsigned timeout_s) {
  const int fd = socket.native_handle();
  const int on = 1, idle = static_cast<int>(std::max(1u, timeout_s / 3)), count = 3;
  const int interval = std::max(1, idle / 2);
  const unsigned user_timeout_ms = timeout_s * 1000;
  if (::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) < 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval) < 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count) < 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms) < 0)
    fail_errno(errno, "migration: set keepalive and TCP_USER_TIMEOUT on the connection");
}

std::string read_key_file(const fs::path& path) {
  std::string key = read_file(path);
  if (key.size() < 16) fail("key file {}: {} bytes; a key needs at least 16 (e.g. head -c 32 /dev/urandom > {})",
                            path.string(), key.size(), path.string());
  return key;
}

bool safe_relative_name(std::string_view name) {
  if (name.empty() || name.size() > 255 || name.front() == '/') return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' || c == '/')) return false;
  size_t at = 0;
  while (at <= name.size()) {
    size_t end = name.find('/', at);
    if (end == std::string_view::npos) end = name.size();
    std::string_view part = name.substr(at, end - at);
    if (part.empty() || part == "." || part == "..") return false;
    at = end + 1;
  }
  return true;
}

tcp::endpoint parse_endpoint(std::string_view text, std::string_view option) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    throw UsageError(fmt::format("{} {}: expected ADDR:PORT", option, text));
  std::string host(text.substr(0, colon));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  auto port_text = text.substr(colon + 1);
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535)
    throw UsageError(fmt::format("{} {}: bad port", option, text));
  boost::system::error_code bad;
  auto address = boost::asio::ip::make_address(host, bad);
  if (bad) throw UsageError(fmt::format("{} {}: '{}' is not an IP address", option, text, host));
  return {address, static_cast<unsigned short>(port)};
}

}  // namespace stasis::transport
