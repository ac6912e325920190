// A TCP relay on loopback between a client and a server at to_port: it forwards both ways,
// flips one bit of the client's stream at a given offset if asked (a tampered stream), and
// keeps the first bytes the client sent (what an eavesdropper on the wire sees).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace stasis::test {

class Relay {
 public:
  // flip_at: the offset in the client's stream of the byte whose low bit is flipped.
  explicit Relay(int to_port, std::optional<uint64_t> flip_at = std::nullopt, size_t keep = 64 << 20);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  bool flipped() const { return flipped_; }
  // Up to `keep` bytes of what the client sent, from the start.
  std::string client_bytes() const;

 private:
  void run();

  const int to_port_;
  const std::optional<uint64_t> flip_at_;
  const size_t keep_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false}, flipped_{false};
  mutable std::mutex mutex_;
  std::string client_bytes_;
  std::thread thread_;
};

}  // namespace stasis::test
