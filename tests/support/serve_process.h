// A `stasis serve` of a test's (`stasis migrate` goes to it): run as a child, in a network
// namespace of the test's or not, killed by its PID and reaped at the end, with whatever it
// restored removed.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/test_util.h"

namespace stasis::test {

// How a test's serve runs: in a network namespace (`nsenter --net`) or not, on which address,
// with a key file (--key) or --plaintext, other options, and STASIS_FAULT (common/fault.h).
struct ServeSetup {
  std::string key;          // empty: --plaintext
  std::string fault;        // STASIS_FAULT
  std::string fault_pause;  // STASIS_FAULT_PAUSE
  std::string netns;        // run under nsenter --net=/run/netns/NETNS
  std::string address = "127.0.0.1";
  std::vector<std::string> options;  // more options of serve
};

ServeSetup setup_with(const std::string& key, const std::string& fault, const std::string& netns = "",
                      const std::string& address = "127.0.0.1");

// `stasis --root ROOT serve --listen ADDR:0 ...`; the constructor waits until it listens.
class Server {
 public:
  explicit Server(const std::filesystem::path& root, const std::string& key = "", const std::string& fault = "")
      : Server(root, setup_with(key, fault)) {}
  Server(const std::filesystem::path& root, const ServeSetup& setup);
  ~Server();  // removes the containers it was told it holds, then kills and reaps serve
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void stop(int sig = SIGKILL);
  int port() const { return port_; }
  std::string address() const { return address_ + ":" + std::to_string(port_); }
  pid_t pid() const { return pid_; }
  std::string log() const;
  // Container `name` may arrive here: removed at the end.
  void will_hold(const std::string& name) { names_.push_back(name); }
  // `stasis --root ROOT args...` (not in the namespace).
  CommandResult stasis(const std::vector<std::string>& args) const;

 private:
  std::filesystem::path root_, log_;
  std::string netns_, address_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::vector<std::string> names_;
};

}  // namespace stasis::test
