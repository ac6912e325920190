// Other "hosts" on this machine (docs/testing.md): a network namespace made by the test
// (`ip netns add`), and, for a host that runs stasis, a state root of its own, with `stasis`
// run under `nsenter --net=/run/netns/NAME` (not `ip netns exec`, which remounts /sys and
// hides /sys/fs/cgroup). Destructors remove what was made, even when the test failed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/test_util.h"

namespace stasis::test {

// A network namespace of the test's, "stasis-TAG-PID", deleted by the destructor.
class NetNamespace {
 public:
  explicit NetNamespace(const std::string& tag);
  ~NetNamespace();
  NetNamespace(const NetNamespace&) = delete;
  NetNamespace& operator=(const NetNamespace&) = delete;

  ::testing::AssertionResult ready() const;
  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  // `sh -c script` in this namespace (nsenter --net).
  CommandResult sh(const std::string& script, std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;
  // Its namespace as /proc/PID/ns/net reads ("net:[inode]").
  std::string net_id() const;

 private:
  std::string name_;
  bool made_ = false;
  std::string error_;
};

// A second host: its own network namespace and state root. The destructor removes every
// container made through it (by name, then by the PID in its state) before the namespace.
class SecondHost {
 public:
  explicit SecondHost(const std::string& tag) : netns_(tag) {}
  ~SecondHost();
  SecondHost(const SecondHost&) = delete;
  SecondHost& operator=(const SecondHost&) = delete;

  ::testing::AssertionResult ready() const { return netns_.ready(); }
  const NetNamespace& ns() const { return netns_; }
  const std::string& netns() const { return netns_.name(); }
  const std::filesystem::path& root() const { return root_.path(); }
  std::string net_id() const { return netns_.net_id(); }
  // `nsenter --net=/run/netns/NAME stasis --root ROOT args...`
  CommandResult stasis(const std::vector<std::string>& args,
                       std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;
  // `stasis restore -D dir --name NAME -d [options]` on this host; the container is removed at the end.
  CommandResult restore(const std::filesystem::path& dir, const std::string& name,
                        const std::vector<std::string>& options = {});
  // Any command that makes container `name` on this host (removed at the end).
  CommandResult make_container(const std::vector<std::string>& args, const std::string& name);
  std::optional<pid_t> init_pid(const std::string& name) const;

 private:
  NetNamespace netns_;
  TempDir root_{"stasis-host2"};
  std::vector<std::string> names_;
};

}  // namespace stasis::test
