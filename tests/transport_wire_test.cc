// The migration stream itself (transport/wire.h), between two Channels over loopback TCP with a
// relay in the middle that sees what an eavesdropper would: in key mode the payloads are
// encrypted and each piece authenticated; a bit changed on the way fails the piece it lies in
// before any of that piece is handed out; a client of another protocol version is told so.
#include <gtest/gtest.h>

#include <future>
#include <string>
#include <thread>

#include "common/error.h"
#include "tests/support/relay.h"
#include "transport/seal.h"
#include "transport/wire.h"

namespace stasis::test {
namespace {

using transport::Channel;
using transport::Frame;
using transport::FrameKind;
using transport::tcp;

const std::string kKey(32, 'k');
const std::string kMarker = "stasis-wire-test-marker-0123456789;";

// 3.5 pieces of text that says where it is, so that a byte out of place shows.
std::string payload_of(size_t size) {
  std::string out;
  for (size_t i = 0; out.size() < size; ++i) out += kMarker + std::to_string(i) + "\n";
  out.resize(size);
  return out;
}

// A server Channel on loopback that opens with `key` and runs `reader` on what it receives.
class WireServer {
 public:
  WireServer() : acceptor_(io_, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)) {}
  int port() const { return acceptor_.local_endpoint().port(); }

  // Starts the server; the future holds the reader's result, or its exception.
  template <typename Reader>
  auto serve(std::optional<std::string> key, Reader reader) {
    return std::async(std::launch::async, [this, key, reader] {
      Channel channel(acceptor_.accept());
      channel.open_server(key);
      return reader(channel);
    });
  }

 private:
  boost::asio::io_context io_;
  tcp::acceptor acceptor_;
};

Channel connect(boost::asio::io_context& io, const std::string& address) {
  tcp::socket socket(io);
  socket.connect(transport::parse_endpoint(address, "--to"));
  return Channel(std::move(socket));
}

void send_file_frame(Channel& channel, const std::string& name, const std::string& data) {
  channel.begin_frame(FrameKind::File, name, data.size());
  // In uneven pieces, not the sealer's: the receiver must cut the same pieces anyway.
  for (size_t at = 0; at < data.size();) {
    const size_t n = std::min<size_t>(data.size() - at, at % 3 == 0 ? 300000 : 1 << 20);
    channel.send_payload(data.data() + at, n);
    at += n;
  }
  channel.end_frame();
}

std::string read_whole_payload(Channel& channel, const Frame& frame, size_t step) {
  std::string out(frame.payload, '\0');
  for (size_t at = 0; at < out.size();) {
    const size_t n = std::min(step, out.size() - at);
    channel.read_payload(out.data() + at, n);
    at += n;
  }
  return out;
}

TEST(TransportWire, KeyModeEncryptsPayloadsAndDeliversThemWhole) {
  const std::string big = payload_of(3 * transport::Sealer::kPiece + transport::Sealer::kPiece / 2);
  WireServer server;
  Relay relay(server.port());
  auto received = server.serve(kKey, [&](Channel& ch) {
    std::vector<std::string> got;
    Frame a = ch.read_frame();
    got.push_back(a.text + "=" + read_whole_payload(ch, a, 777));  // smaller than a piece
    Frame b = ch.read_frame();
    got.push_back(b.text + "=" + read_whole_payload(ch, b, 1));
    Frame c = ch.read_frame();
    got.push_back(c.text + "=" + read_whole_payload(ch, c, 5 << 20));  // larger than a piece
    Frame d = ch.read_frame();
    got.push_back(d.text);
    return got;
  });
  boost::asio::io_context io;
  Channel client = connect(io, relay.address());
  client.open_client(kKey);
  send_file_frame(client, "1/pages-1.img", big);
  send_file_frame(client, "1/one", "x");
  send_file_frame(client, "1/pages-2.img", big);
  client.send_frame(FrameKind::Go, "go");
  ASSERT_EQ(received.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  const auto got = received.get();
  ASSERT_EQ(got.size(), 4u);
  EXPECT_TRUE(got[0] == "1/pages-1.img=" + big) << "the first frame's payload came back changed";
  EXPECT_EQ(got[1], "1/one=x");
  EXPECT_TRUE(got[2] == "1/pages-2.img=" + big) << "the third frame's payload came back changed";
  EXPECT_EQ(got[3], "go");
  const std::string wire = relay.client_bytes();
  EXPECT_GT(wire.size(), 2 * big.size());
  EXPECT_EQ(wire.find(kMarker), std::string::npos) << "a payload crossed the wire readable in key mode";
}

TEST(TransportWire, PlaintextModeIsReadableOnTheWire) {
  const std::string data = payload_of(100000);
  WireServer server;
  Relay relay(server.port());
  auto received = server.serve(std::nullopt, [&](Channel& ch) {
    Frame f = ch.read_frame();
    return read_whole_payload(ch, f, 4096);
  });
  boost::asio::io_context io;
  Channel client = connect(io, relay.address());
  client.open_client(std::nullopt);
  send_file_frame(client, "1/file", data);
  ASSERT_EQ(received.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_TRUE(received.get() == data);
  EXPECT_NE(relay.client_bytes().find(kMarker), std::string::npos) << "the relay saw nothing: this test proves nothing";
}

// The third piece has one bit changed: the first two are handed out, the third is not.
TEST(TransportWire, ChangedBitFailsItsPieceBeforeAnyOfItIsHandedOut) {
  const size_t piece = transport::Sealer::kPiece;
  const std::string data = payload_of(4 * piece);
  WireServer server;
  // Past the opening frames and two pieces with their tags, into the third piece.
  Relay relay(server.port(), 2 * (piece + transport::Sealer::kTag) + 4096 + 1000);
  std::atomic<size_t> handed_out{0};
  auto received = server.serve(kKey, [&](Channel& ch) -> std::string {
    Frame f = ch.read_frame();
    std::string buf(piece, '\0');
    for (int i = 0; i < 4; ++i) {
      try {
        ch.read_payload(buf.data(), buf.size());
      } catch (const Error& e) {
        return e.what();
      }
      if (buf != data.substr(static_cast<size_t>(i) * piece, piece)) return "piece " + std::to_string(i) + " changed";
      handed_out += piece;
    }
    return "all read";
  });
  boost::asio::io_context io;
  Channel client = connect(io, relay.address());
  client.open_client(kKey);
  try {
    send_file_frame(client, "1/pages-1.img", data);
  } catch (const std::exception&) {
    // the server may drop the connection first
  }
  ASSERT_EQ(received.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_TRUE(relay.flipped());
  const std::string result = received.get();
  EXPECT_NE(result.find("failed its authentication tag"), std::string::npos) << result;
  EXPECT_EQ(handed_out.load(), 2 * piece);
}

TEST(TransportWire, ClientOfAnotherProtocolVersionIsToldSo) {
  WireServer server;
  auto refused = server.serve(std::nullopt, [](Channel&) { return 0; });
  boost::asio::io_context io;
  Channel client = connect(io, "127.0.0.1:" + std::to_string(server.port()));
  client.send_frame(FrameKind::Hello, "stasis-migrate 1 plaintext 00");
  ASSERT_EQ(refused.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  try {
    refused.get();
    FAIL() << "the server took a client of another version";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stasis-migrate 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("same stasis version"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace stasis::test
