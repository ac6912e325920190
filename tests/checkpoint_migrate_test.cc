// `stasis migrate NAME --to ADDR:PORT` to a `stasis serve` on loopback. The second "host" is a
// state root of its own (as in checkpoint_hosts_test.cc), its serve listening on 127.0.0.1.
// The job (dirtier) keeps rewriting pages and checks all of them every half second, so a page
// missing or stale after the move fails it. Failures before the destination runs the job must
// leave the source running.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <thread>
#include <regex>
#include <sstream>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

// `stasis --root ROOT serve --listen 127.0.0.1:0 --plaintext`, killed (by pid) and reaped at
// the end, with whatever it restored removed.
class Server {
 public:
  // key: the key file (--key), or empty for --plaintext; fault: STASIS_FAULT for the serve
  // (common/fault.h), or empty.
  explicit Server(const fs::path& root, const std::string& key = "", const std::string& fault = "") : root_(root) {
    log_ = root.parent_path() / ("serve-" + std::to_string(::getpid()) + ".log");
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::setsid();
      if (!fault.empty()) ::setenv("STASIS_FAULT", fault.c_str(), 1);
      std::string bin = stasis_binary(), r = root.string();
      if (key.empty())
        ::execl(bin.c_str(), "stasis", "--root", r.c_str(), "serve", "--listen", "127.0.0.1:0", "--plaintext",
                static_cast<char*>(nullptr));
      else
        ::execl(bin.c_str(), "stasis", "--root", r.c_str(), "serve", "--listen", "127.0.0.1:0", "--key", key.c_str(),
                static_cast<char*>(nullptr));
      ::_exit(127);
    }
    wait_until(
        [&] {
          std::ifstream in(log_);
          std::stringstream text;
          text << in.rdbuf();
          std::smatch m;
          std::string s = text.str();
          if (!std::regex_search(s, m, std::regex("listening on 127.0.0.1:([0-9]+)"))) return false;
          port_ = std::stoi(m[1]);
          return true;
        },
        10s);
  }
  ~Server() {
    for (const auto& name : names_) run_stasis({"--root", root_.string(), "rm", "-f", name}, 30s);
    stop();
    std::error_code ec;
    fs::remove(log_, ec);
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string log() const {
    std::ifstream in(log_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  void will_hold(const std::string& name) { names_.push_back(name); }
  CommandResult stasis(const std::vector<std::string>& args) const {
    std::vector<std::string> all{"--root", root_.string()};
    all.insert(all.end(), args.begin(), args.end());
    return run_stasis(all, 60s);
  }

 private:
  fs::path root_, log_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::vector<std::string> names_;
};

bool listed_running(const CommandResult& ps, const std::string& name) {
  std::istringstream in(ps.out);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + " ", 0) == 0 && line.find("running") != std::string::npos) return true;
  return false;
}

// A 32-byte key file in dir.
fs::path write_key(const fs::path& dir, const std::string& name, char fill) {
  fs::path path = dir / name;
  std::ofstream(path) << std::string(32, fill);
  return path;
}

TEST(CheckpointMigrate, RunningContainerMovesToAnotherStateRootOnLoopback) {
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  CheckpointEnv env;
  TempDir destination_root("stasis-dst");
  const fs::path key = write_key(env.work(), "key", 'k');
  Server server(destination_root.path(), key.string());
  ASSERT_GT(server.port(), 0) << "stasis serve did not start";
  Container original(env, "mig");
  ASSERT_TRUE(original.run(c_workload("dirtier", {"128", "16"})));
  server.will_hold(original.name());

  CommandResult r = env.stasis({"migrate", original.name(), "--to", server.address(), "--key", key.string()}, 120s);
  std::printf("%s", r.out.c_str());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("round 2:"), std::string::npos) << "no second pre-copy round: " << r.out;
  EXPECT_NE(r.out.find("migrated " + original.name()), std::string::npos) << r.out;
  // Gone here, running there, its memory intact (the workload checks every page).
  EXPECT_FALSE(listed_running(env.stasis({"ps", "-a"}), original.name()));
  EXPECT_TRUE(listed_running(server.stasis({"ps", "-a"}), original.name()));
  EXPECT_TRUE(keep_progressing(original.status(), 3000ms));
  EXPECT_TRUE(fs::is_empty(destination_root.path() / "incoming")) << "the staged images stayed on the destination";
}

TEST(CheckpointMigrate, RefusalOrNoServerLeavesTheSourceRunning) {
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  CheckpointEnv env;
  TempDir destination_root("stasis-dst");
  Server server(destination_root.path());
  ASSERT_GT(server.port(), 0) << "stasis serve did not start";
  Container original(env, "migfail");
  ASSERT_TRUE(original.run(c_workload("dirtier", {"32", "8"})));

  // The destination already has a container of that name: its restore fails.
  server.will_hold(original.name());
  CommandResult taken = server.stasis({"run", "-d", "--name", original.name(), "sleep", "600"});
  ASSERT_EQ(taken.exit_code, 0) << taken.out << taken.err;
  CommandResult r = env.stasis({"migrate", original.name(), "--to", server.address(), "--plaintext"}, 120s);
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.err.find("could not restore it"), std::string::npos) << r.out << r.err;
  EXPECT_TRUE(listed_running(env.stasis({"ps", "-a"}), original.name()));
  EXPECT_TRUE(keep_progressing(original.status(), 1500ms));
  // And no longer tracked: no tracker record is left (dump/dirty_tracking.h).
  std::error_code ec;
  for (fs::directory_iterator it(env.root() / "dirty-tracking", ec), end; !ec && it != end; it.increment(ec))
    EXPECT_EQ(it->path().extension(), ".lock") << it->path();

  // A name the destination does not have: moved, with the figures as JSON lines.
  {
    Container other(env, "migjson");
    ASSERT_TRUE(other.run(c_workload("dirtier", {"16", "4"})));
    server.will_hold(other.name());
    CommandResult moved = env.stasis({"migrate", other.name(), "--to", server.address(), "--plaintext", "--json"}, 60s);
    EXPECT_EQ(moved.exit_code, 0) << moved.out << moved.err;
    EXPECT_NE(moved.out.find("{\"event\":\"round\",\"round\":1,"), std::string::npos) << moved.out;
    EXPECT_NE(moved.out.find("{\"event\":\"done\",\"rounds\":"), std::string::npos) << moved.out;
    EXPECT_TRUE(keep_progressing(other.status(), 1000ms));
  }

  // Nobody listening.
  const std::string address = server.address();
  server.stop();
  r = env.stasis({"migrate", original.name(), "--to", address, "--plaintext"}, 60s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("is `stasis serve` running there?"), std::string::npos) << r.err;
  EXPECT_TRUE(listed_running(env.stasis({"ps", "-a"}), original.name()));
  EXPECT_TRUE(keep_progressing(original.status(), 1000ms));

  // Neither a key nor --plaintext: refused up front (usage).
  r = env.stasis({"migrate", original.name(), "--to", address}, 30s);
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
}

// The destination dies in the middle of the pre-copy: the source runs on, untracked; a new
// serve on the same state root removes what the dead one had staged.
TEST(CheckpointMigrate, DestinationKilledDuringPreCopyLeavesTheSourceRunning) {
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  CheckpointEnv env;
  TempDir destination_root("stasis-dst");
  auto server = std::make_unique<Server>(destination_root.path());
  ASSERT_GT(server->port(), 0) << "stasis serve did not start";
  Container original(env, "migkill");
  ASSERT_TRUE(original.run(c_workload("dirtier", {"512", "16"}), {}));
  server->will_hold(original.name());
  const fs::path incoming = destination_root.path() / "incoming";
  std::atomic<bool> killed{false};
  std::thread killer([&] {
    // As soon as the first file of round 1 arrives.
    wait_until(
        [&] {
          std::error_code ec;
          for (fs::recursive_directory_iterator it(incoming, ec), end; !ec && it != end; it.increment(ec))
            if (it->is_regular_file(ec)) return true;
          return false;
        },
        30s);
    server->stop();
    killed = true;
  });
  CommandResult r = env.stasis({"migrate", original.name(), "--to", server->address(), "--plaintext"}, 120s);
  killer.join();
  ASSERT_TRUE(killed);
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("runs on here"), std::string::npos) << r.out << r.err;
  EXPECT_TRUE(listed_running(env.stasis({"ps", "-a"}), original.name()));
  EXPECT_TRUE(keep_progressing(original.status(), 1500ms));
  std::error_code ec;
  for (fs::directory_iterator it(env.root() / "dirty-tracking", ec), end; !ec && it != end; it.increment(ec))
    EXPECT_EQ(it->path().extension(), ".lock") << it->path();
  // The next serve clears what the killed one staged.
  EXPECT_FALSE(fs::is_empty(incoming));
  server = std::make_unique<Server>(destination_root.path());
  ASSERT_GT(server->port(), 0);
  EXPECT_TRUE(fs::is_empty(incoming));
}

// The destination dies after the restore was asked for: it may run the job, so the source
// must not run it too. It is left frozen, and migrate says so.
TEST(CheckpointMigrate, DestinationLostAfterTheRestoreRequestLeavesTheSourceFrozen) {
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  CheckpointEnv env;
  TempDir destination_root("stasis-dst");
  Server server(destination_root.path(), "", "serve-exit-before-restore");
  ASSERT_GT(server.port(), 0) << "stasis serve did not start";
  Container original(env, "miglost");
  ASSERT_TRUE(original.run(c_workload("dirtier", {"32", "8"})));
  CommandResult r = env.stasis({"migrate", original.name(), "--to", server.address(), "--plaintext"}, 120s);
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("it is left frozen"), std::string::npos) << r.out << r.err;
  CommandResult ps = env.stasis({"ps", "-a"});
  EXPECT_NE(ps.out.find("frozen"), std::string::npos) << ps.out;
  // The one who knows thaws it: it goes on where it was.
  ASSERT_EQ(env.stasis({"thaw", original.name()}).exit_code, 0);
  EXPECT_TRUE(keep_progressing(original.status(), 1500ms));
}

// Only a peer holding the key: a wrong key on either side is refused before anything is sent,
// and a plaintext client is refused by a serve with a key. The source runs on each time.
TEST(CheckpointMigrate, WrongKeyOrNoKeyIsRefused) {
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  CheckpointEnv env;
  TempDir destination_root("stasis-dst");
  const fs::path key = write_key(env.work(), "key", 'k'), other = write_key(env.work(), "other", 'o');
  Server server(destination_root.path(), key.string());
  ASSERT_GT(server.port(), 0) << "stasis serve did not start";
  Container original(env, "migkey");
  ASSERT_TRUE(original.run(c_workload("dirtier", {"16", "4"})));
  CommandResult r = env.stasis({"migrate", original.name(), "--to", server.address(), "--key", other.string()}, 60s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("does not hold our key"), std::string::npos) << r.out << r.err;
  r = env.stasis({"migrate", original.name(), "--to", server.address(), "--plaintext"}, 60s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(wait_until([&] { return server.log().find("the client's mode is not ours") != std::string::npos; }, 10s))
      << server.log();
  EXPECT_TRUE(listed_running(env.stasis({"ps", "-a"}), original.name()));
  EXPECT_TRUE(keep_progressing(original.status(), 1000ms));
  EXPECT_TRUE(fs::is_empty(destination_root.path() / "incoming"));
}

// A relay between migrate and serve that flips one byte of the client's stream at `offset`.
class TamperingRelay {
 public:
  TamperingRelay(int to_port, uint64_t offset) : to_port_(to_port), offset_(offset) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(listener_, 1) < 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) < 0)
      return;
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~TamperingRelay() {
    stop_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    ::close(listener_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  bool flipped() const { return flipped_; }

 private:
  void run() {
    pollfd l{listener_, POLLIN, 0};
    while (!stop_ && ::poll(&l, 1, 100) == 0) {
    }
    if (stop_) return;
    int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(to_port_));
    if (client < 0 || ::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return;
    uint64_t forwarded = 0;
    std::vector<char> buf(1 << 16);
    while (!stop_) {
      pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (::poll(p, 2, 100) <= 0) continue;
      bool closed = false;
      for (int i = 0; i < 2; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = ::read(p[i].fd, buf.data(), buf.size());
        if (n <= 0) {
          closed = true;
          break;
        }
        if (i == 0) {
          if (forwarded <= offset_ && offset_ < forwarded + static_cast<uint64_t>(n)) {
            buf[offset_ - forwarded] ^= 0x01;
            flipped_ = true;
          }
          forwarded += static_cast<uint64_t>(n);
        }
        if (::send(p[1 - i].fd, buf.data(), static_cast<size_t>(n), MSG_NOSIGNAL) != n) closed = true;
      }
      if (closed) break;
    }
    ::close(client);
    ::close(server);
  }

  int to_port_;
  uint64_t offset_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false}, flipped_{false};
  std::thread thread_;
};

// One bit changed on the way: serve finds the frame's tag wrong and drops the connection
// before restoring anything; the source runs on.
TEST(CheckpointMigrate, TamperedStreamIsRefused) {
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  CheckpointEnv env;
  TempDir destination_root("stasis-dst");
  const fs::path key = write_key(env.work(), "key", 'k');
  Server server(destination_root.path(), key.string());
  ASSERT_GT(server.port(), 0) << "stasis serve did not start";
  TamperingRelay relay(server.port(), 300000);  // inside the first round's page file
  Container original(env, "migtamper");
  ASSERT_TRUE(original.run(c_workload("dirtier", {"16", "4"})));
  server.will_hold(original.name());
  CommandResult r = env.stasis({"migrate", original.name(), "--to", relay.address(), "--key", key.string()}, 60s);
  EXPECT_TRUE(relay.flipped());
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.err.find("runs on here"), std::string::npos) << r.out << r.err;
  EXPECT_TRUE(wait_until([&] { return server.log().find("failed its authentication tag") != std::string::npos; }, 10s))
      << server.log();
  EXPECT_TRUE(listed_running(env.stasis({"ps", "-a"}), original.name()));
  EXPECT_FALSE(listed_running(server.stasis({"ps", "-a"}), original.name()));
  EXPECT_TRUE(keep_progressing(original.status(), 1000ms));
  EXPECT_TRUE(wait_until([&] { return fs::is_empty(destination_root.path() / "incoming"); }, 10s));
}

}  // namespace
}  // namespace stasis::test
