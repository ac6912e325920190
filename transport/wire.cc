#include "transport/wire.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <vector>

#include "common/error.h"
#include "common/file_util.h"

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

}  // namespace

void send_frame(tcp::socket& socket, FrameKind kind, std::string_view text, uint64_t payload) {
  std::string out;
  out += static_cast<char>(kind);
  put<uint32_t>(out, static_cast<uint32_t>(text.size()));
  out += text;
  put<uint64_t>(out, payload);
  boost::asio::write(socket, boost::asio::buffer(out));
}

Frame read_frame(tcp::socket& socket) {
  unsigned char head[5];
  boost::asio::read(socket, boost::asio::buffer(head));
  Frame f;
  f.kind = static_cast<FrameKind>(head[0]);
  const auto len = get<uint32_t>(head + 1);
  if (len > kMaxText) fail("migration stream: a frame of kind {} announces {} bytes of text", head[0], len);
  f.text.resize(len);
  boost::asio::read(socket, boost::asio::buffer(f.text));
  unsigned char size[8];
  boost::asio::read(socket, boost::asio::buffer(size));
  f.payload = get<uint64_t>(size);
  return f;
}

uint64_t send_directory(tcp::socket& socket, const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  uint64_t sent = 0;
  std::vector<char> buf(kPiece);
  for (const auto& file : files) {
    UniqueFd fd = open_or_throw(file, O_RDONLY | O_CLOEXEC);
    const uint64_t size = fs::file_size(file);
    send_frame(socket, FrameKind::File, prefix + "/" + file.filename().string(), size);
    for (uint64_t done = 0; done < size;) {
      ssize_t n = ::read(fd.get(), buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), size - done)));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail_errno(n < 0 ? errno : EIO, "read {}", file.string());
      boost::asio::write(socket, boost::asio::buffer(buf.data(), static_cast<size_t>(n)));
      done += static_cast<uint64_t>(n);
    }
    sent += size;
  }
  return sent;
}

void receive_file(tcp::socket& socket, uint64_t size, const fs::path& to) {
  fs::create_directories(to.parent_path());
  UniqueFd fd = open_or_throw(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  std::vector<char> buf(kPiece);
  for (uint64_t done = 0; done < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - done));
    boost::asio::read(socket, boost::asio::buffer(buf.data(), n));
    write_all(fd.get(), std::as_bytes(std::span(buf.data(), n)), to.string());
    done += n;
  }
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
