// The migration stream between `stasis migrate` and `stasis serve` (docs/migrate.md): frames
// over one TCP connection (Boost.Asio). A frame is a u8 kind, a u32 length and that many bytes
// of text, a u64 length and that many bytes of payload (little-endian).
//   HELLO   text "stasis-migrate 1"
//   FILE    text = the file's path in the staging folder ("3/pages-1.img"), payload = its bytes
//   RESTORE text = "<checkpoint folder>\n<container name>"
//   RESULT  (from serve) text = "ok" or the reason the restore failed
#pragma once

#include <utility>  // std::exchange, which boost/asio/awaitable.hpp uses without including

#include <boost/asio.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace stasis::transport {

using boost::asio::ip::tcp;

enum class FrameKind : uint8_t { Hello = 1, File = 2, Restore = 3, Result = 4 };
inline constexpr std::string_view kHello = "stasis-migrate 1";

struct Frame {
  FrameKind kind{};
  std::string text;
  uint64_t payload = 0;  // bytes that follow, for the reader to take
};

void send_frame(tcp::socket& socket, FrameKind kind, std::string_view text, uint64_t payload = 0);
Frame read_frame(tcp::socket& socket);
// Every regular file of dir, as FILE frames named prefix/NAME; returns the bytes sent.
uint64_t send_directory(tcp::socket& socket, const std::filesystem::path& dir, const std::string& prefix);
// The payload of a FILE frame into `to` (created).
void receive_file(tcp::socket& socket, uint64_t size, const std::filesystem::path& to);
// Checks a FILE frame's name: relative, no "..", plain characters.
bool safe_relative_name(std::string_view name);
// "ADDR:PORT" (IPv4, or [IPv6]:PORT).
tcp::endpoint parse_endpoint(std::string_view text, std::string_view option);

}  // namespace stasis::transport
