// TCP, UDP and netlink sockets across dump and restore: listeners and UDP sockets with their
// options and queued datagrams, established connections with --tcp-established (both ends in
// the job, and a client of the test's outside it) under the network lock, and the refusals
// (an established connection without the option, a packet socket). The workload inet_echo
// checks its own sockets; the test checks its client's connection.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>
#include <utility>

#include <gtest/gtest.h>

#include "common/fd.h"
#include <fmt/format.h>
#include "images/image_file.h"
#include "inet_socket.pb.h"
#include "tests/support/checkpoint_harness.h"
#include "tests/support/test_util.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

constexpr int kTcpEstablished = 1;  // TCP_INFO tcpi_state

// Five ports in a row for one workload, apart for each test process.
int base_port() { return 30000 + static_cast<int>(::getpid() % 3000) * 10; }

UniqueFd connect_to(int family, int port, const char* ipv4 = "127.0.0.1") {
  UniqueFd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    auto& a = reinterpret_cast<sockaddr_in&>(ss);
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, ipv4, &a.sin_addr);
    len = sizeof a;
  } else {
    auto& a = reinterpret_cast<sockaddr_in6&>(ss);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    a.sin6_addr = in6addr_loopback;
    len = sizeof a;
  }
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0) return UniqueFd();
  return s;
}

// Sends msg and reads its echo (within 10 s).
::testing::AssertionResult echo(int s, const std::string& msg) {
  if (::send(s, msg.data(), msg.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size()))
    return ::testing::AssertionFailure() << "send: " << strerror(errno);
  std::string got;
  while (got.size() < msg.size()) {
    pollfd p{s, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return ::testing::AssertionFailure() << "no echo within 10 s (got \"" << got << "\")";
    char buf[512];
    ssize_t n = ::recv(s, buf, sizeof buf, 0);
    if (n <= 0) return ::testing::AssertionFailure() << "recv: " << (n < 0 ? strerror(errno) : "end of stream");
    got.append(buf, static_cast<size_t>(n));
  }
  if (got != msg) return ::testing::AssertionFailure() << "echo \"" << got << "\" for \"" << msg << "\"";
  return ::testing::AssertionSuccess();
}

// tcp_connecting: lets the job listen at the address it connects to, and waits (20 s at most)
// until it says its connections completed.
bool answer_and_wait_connected(const fs::path& status) {
  std::ofstream(status.string() + ".answer") << "now\n";
  return wait_until(
      [&] {
        std::ifstream in(status.string() + ".connected");
        std::string word;
        in >> word;
        return word == "connected";
      },
      20s);
}

bool nft_table_exists(const std::string& prefix) {
  auto r = run_command({"nft", "list", "tables"}, std::chrono::seconds(10));
  return r.out.find(prefix) != std::string::npos;
}

// Removes, even when the test fails, a network lock a dump of host process pid left in the
// host's namespace (tables "inet stasis_lock_<pid>_...").
class LockCleanup {
 public:
  explicit LockCleanup(pid_t pid) : prefix_(fmt::format("table inet stasis_lock_{}_", pid)) {}
  ~LockCleanup() {
    auto r = run_command({"nft", "list", "tables"}, std::chrono::seconds(10));
    for (size_t at = r.out.find(prefix_); at != std::string::npos; at = r.out.find(prefix_, at + 1)) {
      const size_t name = at + std::string("table inet ").size();
      run_command({"nft", "delete", "table", "inet", r.out.substr(name, r.out.find('\n', name) - name)},
                  std::chrono::seconds(10));
    }
  }
  LockCleanup(const LockCleanup&) = delete;
  LockCleanup& operator=(const LockCleanup&) = delete;

 private:
  std::string prefix_;
};

// Listeners (IPv4, IPv6 v6only), UDP sockets with queued datagrams and netlink sockets come
// back without --tcp-established: the workload's checks go on, and new clients are served
// at the same addresses.
TEST(CheckpointInetSockets, ListenersUdpAndNetlinkComeBack) {
  CheckpointEnv env;
  const int port = base_port();
  const fs::path status = env.status_path("listen");
  HostProcess job;
  ASSERT_TRUE(job.start(c_workload("inet_echo", {"127.0.0.1", std::to_string(port)}), status));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(status, 5, 10s, &n));
  const fs::path images = env.image_dir("listen");
  ASSERT_TRUE(env.dump_pid(job.pid(), images));
  ASSERT_TRUE(job.wait_exit(10s)) << "dump --pid without --leave-running must stop the process";
  EXPECT_FALSE(connect_to(AF_INET, port)) << "something still listens after the dump";
  n = std::max(n, read_status(status).progress);

  Container restored(env, "listen");
  ASSERT_TRUE(restored.restore(images, status)) << restored.last_output();
  ASSERT_TRUE(wait_for_progress(status, n + 10, 20s, &n, n));
  UniqueFd c4 = connect_to(AF_INET, port);
  ASSERT_TRUE(c4) << "nothing listens at 127.0.0.1:" << port << " after the restore";
  EXPECT_TRUE(echo(c4.get(), "hello over IPv4\n"));
  UniqueFd c6 = connect_to(AF_INET6, port + 1);
  ASSERT_TRUE(c6) << "nothing listens at [::1]:" << port + 1 << " after the restore";
  EXPECT_TRUE(echo(c6.get(), "hello over IPv6\n"));
  EXPECT_TRUE(keep_progressing(status, 1s));
}

// Without --tcp-established, an established connection is refused by name, and the job and
// its connections go on untouched.
TEST(CheckpointInetSockets, EstablishedWithoutTheOptionIsRefused) {
  CheckpointEnv env;
  const int port = base_port() + 5;
  const fs::path status = env.status_path("refused");
  HostProcess job;
  ASSERT_TRUE(job.start(c_workload("inet_echo", {"127.0.0.1", std::to_string(port), "inner"}), status));
  ASSERT_TRUE(wait_for_progress(status, 5, 10s));
  UniqueFd client = connect_to(AF_INET, port);
  ASSERT_TRUE(client);
  ASSERT_TRUE(echo(client.get(), "before\n"));
  auto r = env.stasis({"dump", "--pid", std::to_string(job.pid()), "-D", env.image_dir("refused").string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(fmt::format("pid {} fd", job.pid())), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("is an established connection: dump with --tcp-established"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(fmt::format("127.0.0.1:{}", port)), std::string::npos) << r.err;
  ASSERT_TRUE(job.running());
  EXPECT_TRUE(echo(client.get(), "after\n"));
  EXPECT_EQ(tcp_state(client.get()), kTcpEstablished);
  EXPECT_TRUE(keep_progressing(status, 500ms));
}

// A UDP socket's multicast memberships (one for any source, one source-specific) are read back
// group by group and joined again before the job runs: its datagrams keep coming, and the
// group it never joined stays silent (the workload checks both), here and in a copy restored
// beside a job left running.
TEST(CheckpointInetSockets, MulticastMembershipsComeBack) {
  ASSERT_NO_FATAL_FAILURE(check_round_trip(c_workload("udp_multicast")));
  RoundTrip beside;
  beside.leave_running = true;
  ASSERT_NO_FATAL_FAILURE(check_round_trip(c_workload("udp_multicast"), beside));
}

TEST(CheckpointInetSockets, MulticastMembershipsAreInTheImage) {
  CheckpointEnv env;
  Container c(env, "mcast-show");
  ASSERT_TRUE(c.run(c_workload("udp_multicast")));
  ASSERT_TRUE(keep_progressing(c.status(), 300ms));
  const fs::path dir = env.image_dir("mcast-show");
  ASSERT_TRUE(c.dump(dir, {"--leave-running"}));
  auto sockets = images::read_all<pb::InetSocket>(dir / "inet-sockets.img", images::ImageType::InetSockets);
  int any_source = 0, source_specific = 0;
  for (const auto& k : sockets)
    for (const auto& m : k.memberships()) {
      EXPECT_EQ(m.interface(), "lo");
      if (!m.include() && m.sources().empty()) ++any_source;
      if (m.include() && m.sources_size() == 1) ++source_specific;
    }
  EXPECT_EQ(any_source, 1);
  EXPECT_EQ(source_specific, 1);
  EXPECT_TRUE(keep_progressing(c.status(), 300ms));
}

// TCP connections still being made at the dump (SYN_SENT: one polled, one in a blocking
// connect() of a second thread) come back connecting to the same peer from the same address,
// and complete once the peer answers: the job's own listener, started after the restore.
TEST(CheckpointInetSockets, ConnectionsBeingMadeCompleteAfterRestore) {
  RoundTrip how;
  how.after_restore = [](Container& restored) {
    EXPECT_TRUE(answer_and_wait_connected(restored.status())) << read_status(restored.status()).raw;
    EXPECT_TRUE(keep_progressing(restored.status(), 300ms));
  };
  ASSERT_NO_FATAL_FAILURE(check_round_trip(c_workload("tcp_connecting"), how));
}

// Under --tcp-established the network lock holds the connecting sockets too: a frozen
// original (a migration's source) neither sends its SYN again nor completes the handshake
// behind the restore's back. With --leave-running they are let go after the dump, and complete.
TEST(CheckpointInetSockets, ConnectionsBeingMadeAreHeldByTheNetworkLock) {
  CheckpointEnv env;
  Container c(env, "connecting-locked");
  ASSERT_TRUE(c.run(c_workload("tcp_connecting")));
  ASSERT_TRUE(wait_for_progress(c.status(), 2, 20s));
  std::optional<pid_t> job = c.host_pid();
  ASSERT_TRUE(job.has_value());
  const std::string netns = fmt::format("--net=/proc/{}/ns/net", *job);
  const fs::path pause = env.work() / "locked", dir = env.image_dir("connecting-locked"), log = env.work() / "dump.log";
  const pid_t dumper = env.start_paused({"dump", c.name(), "-D", dir.string(), "--leave-running", "--tcp-established"},
                                        "dump-network-locked", pause, log);
  ASSERT_GT(dumper, 0);
  struct Reap {
    pid_t pid;
    fs::path pause;
    ~Reap() {
      std::error_code ec;
      fs::remove(pause, ec);  // lets a paused dump go on, if the test failed there
      int st;
      if (::waitpid(pid, &st, WNOHANG) == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
      }
    }
  } reap{dumper, pause};
  ASSERT_TRUE(wait_until([&] { return fs::exists(pause); }, 60s)) << "the dump never locked: " << read_text(log);

  // Both connections to 10.66.0.2:7070 are in the lock's set, whatever their local ports.
  auto tables = run_command({"nsenter", netns, "nft", "list", "tables"}, 10s);
  const auto at = tables.out.find("stasis_lock_");
  ASSERT_NE(at, std::string::npos) << tables.out << tables.err;
  const std::string table = tables.out.substr(at, tables.out.find_first_of(" \n", at) - at);
  auto set = run_command({"nsenter", netns, "nft", "list", "set", "inet", table, "v4"}, 10s);
  size_t held = 0;
  for (size_t p = set.out.find(". 10.66.0.2 . 7070"); p != std::string::npos; p = set.out.find(". 10.66.0.2 . 7070", p + 1))
    ++held;
  EXPECT_EQ(held, 2u) << set.out << set.err;

  std::error_code ec;
  fs::remove(pause, ec);
  int st = 0;
  ASSERT_EQ(::waitpid(dumper, &st, 0), dumper);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << read_text(log);
  tables = run_command({"nsenter", netns, "nft", "list", "tables"}, 10s);
  EXPECT_EQ(tables.out.find("stasis_lock_"), std::string::npos) << "the lock must go when the job runs on: " << tables.out;
  // The image names the lock, for a restore after a dump that kills the job to remove it.
  size_t named = 0;
  for (const auto& k : images::read_all<pb::InetSocket>(dir / "inet-sockets.img", images::ImageType::InetSockets))
    named += k.lock_table() == table;
  EXPECT_EQ(named, 2u);

  // Let go, the original's connections complete once there is a listener.
  EXPECT_TRUE(answer_and_wait_connected(c.status())) << read_status(c.status()).raw;
}

TEST(CheckpointInetSockets, PacketSocketIsRefusedByName) {
  CheckpointEnv env;
  const int port = base_port() + 7;
  const fs::path status = env.status_path("packet");
  HostProcess job;
  ASSERT_TRUE(job.start(c_workload("inet_echo", {"127.0.0.1", std::to_string(port), "packet"}), status));
  ASSERT_TRUE(wait_for_progress(status, 2, 10s));
  auto r = env.stasis({"dump", "--pid", std::to_string(job.pid()), "-D", env.image_dir("packet").string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("packet socket (AF_PACKET) is not supported"), std::string::npos) << r.err;
  ASSERT_TRUE(job.running());
  EXPECT_TRUE(keep_progressing(status, 500ms));
}

// A connection inside the job (its counter stream checked by the workload) and one from the
// test's client outside it: dumped with --tcp-established (the job killed), restored; the
// client's connection never saw a reset, and its next message is echoed.
TEST(CheckpointInetSockets, EstablishedConnectionsSurviveDumpAndRestore) {
  CheckpointEnv env;
  const int port = base_port() + 1000;
  const fs::path status = env.status_path("established");
  HostProcess job;
  ASSERT_TRUE(job.start(c_workload("inet_echo", {"127.0.0.1", std::to_string(port), "inner"}), status));
  LockCleanup lock_cleanup(job.pid());
  const std::string lock_prefix = fmt::format("stasis_lock_{}_", job.pid());
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(status, 5, 10s, &n));
  UniqueFd client = connect_to(AF_INET, port);
  ASSERT_TRUE(client);
  ASSERT_TRUE(echo(client.get(), "before the dump\n"));
  UniqueFd client6 = connect_to(AF_INET6, port + 1);
  ASSERT_TRUE(client6);
  ASSERT_TRUE(echo(client6.get(), "before the dump (IPv6)\n"));

  const fs::path images = env.image_dir("established");
  ASSERT_TRUE(env.dump_pid(job.pid(), images, {"--tcp-established"}));
  ASSERT_TRUE(job.wait_exit(10s));
  EXPECT_TRUE(nft_table_exists(lock_prefix)) << "the network lock must stay until the restore";
  // Sent while the job is gone: held by the lock, retransmitted by TCP until it is back.
  const std::string while_gone = "sent while the job was gone\n";
  ASSERT_EQ(::send(client.get(), while_gone.data(), while_gone.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(while_gone.size()));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(tcp_state(client.get()), kTcpEstablished);
  n = std::max(n, read_status(status).progress);

  Container restored(env, "established");
  ASSERT_TRUE(restored.restore(images, status)) << restored.last_output();
  EXPECT_FALSE(nft_table_exists(lock_prefix)) << "the restore must remove the network lock";
  ASSERT_TRUE(wait_for_progress(status, n + 10, 20s, &n, n));
  // The echo of what was sent during the gap comes first.
  std::string got;
  while (got.size() < while_gone.size()) {
    pollfd p{client.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1) << "no echo of the message sent during the gap; got \"" << got << "\"";
    char buf[256];
    ssize_t k = ::recv(client.get(), buf, sizeof buf, 0);
    ASSERT_GT(k, 0) << (k < 0 ? strerror(errno) : "end of stream");
    got.append(buf, static_cast<size_t>(k));
  }
  EXPECT_EQ(got, while_gone);
  EXPECT_TRUE(echo(client.get(), "after the restore\n"));
  EXPECT_TRUE(echo(client6.get(), "after the restore (IPv6)\n"));
  EXPECT_EQ(tcp_state(client.get()), kTcpEstablished);
  EXPECT_EQ(socket_error(client.get()), 0) << "the client's connection saw an error (a reset?)";
  EXPECT_TRUE(keep_progressing(status, 1s));
}

// Reads s until its end of stream (within 10 s): what came, and whether the end did.
std::pair<std::string, bool> read_to_end(int s) {
  std::string got;
  for (;;) {
    pollfd p{s, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return {got, false};
    char buf[65536];
    ssize_t n = ::recv(s, buf, sizeof buf, 0);
    if (n == 0) return {got, true};
    if (n < 0) return {got + " (recv: " + strerror(errno) + ")", false};
    got.append(buf, static_cast<size_t>(n));
  }
}

// The pattern inet_halfclosed sends and expects: byte i is i % 251.
std::string pattern(size_t n) {
  std::string p(n, '\0');
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<char>(i % 251);
  return p;
}

std::string counters(uint64_t from, uint64_t count) {
  std::string out;
  for (uint64_t v = from; v < from + count; ++v)
    for (int k = 0; k < 8; ++k) out += static_cast<char>((v >> (8 * k)) & 0xff);
  return out;
}

bool results_have(const fs::path& status, const std::string& line) {
  std::ifstream in(status.string() + ".results");
  for (std::string l; std::getline(in, l);)
    if (l == line) return true;
  return false;
}

// Half-closed connections of a server dumped with --tcp-established (the job killed) and
// restored, a client of the test's at the other end of each: A, which the client shut down
// for writing while the server sends on (the server's side CLOSE_WAIT, unread data and the
// end waiting in it); B, which the server shut down for writing while the client sends on
// (FIN_WAIT2); C, shut down by both, the server's bytes and FIN waiting behind a full window
// (LAST_ACK, mostly unsent). After the restore each stream goes on exactly: the server reads
// A's data and end once, the client gets A's counters, then its end; B's counters sent
// during the gap and after reach the server, which sees the client's end later, and B's end
// stays for the client; C's megabyte and end come whole. No reset anywhere.
TEST(CheckpointInetSockets, HalfClosedConnectionsCarryOn) {
  CheckpointEnv env;
  const int port = base_port() + 1300;
  const fs::path status = env.status_path("halfclosed");
  HostProcess job;
  ASSERT_TRUE(job.start(c_workload("inet_halfclosed", {"127.0.0.1", std::to_string(port)}), status));
  LockCleanup lock_cleanup(job.pid());

  UniqueFd a = connect_to(AF_INET, port);
  ASSERT_TRUE(a);
  const std::string a_data = pattern(3000);
  ASSERT_EQ(::send(a.get(), a_data.data(), a_data.size(), MSG_NOSIGNAL), static_cast<ssize_t>(a_data.size()));
  ASSERT_EQ(::shutdown(a.get(), SHUT_WR), 0);
  UniqueFd b = connect_to(AF_INET, port);
  ASSERT_TRUE(b);
  auto [b_got, b_end] = read_to_end(b.get());
  ASSERT_TRUE(b_end) << "B: no end of stream after " << b_got.size() << " bytes";
  EXPECT_EQ(b_got, pattern(5000));
  uint64_t b_sent = 0;
  const std::string first = counters(b_sent, 10);
  ASSERT_EQ(::send(b.get(), first.data(), first.size(), MSG_NOSIGNAL), static_cast<ssize_t>(first.size()));
  b_sent += 10;
  UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int small = 4096;
  ASSERT_EQ(::setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&to), sizeof to), 0) << strerror(errno);
  const std::string c_data = pattern(100);
  ASSERT_EQ(::send(c.get(), c_data.data(), c_data.size(), MSG_NOSIGNAL), static_cast<ssize_t>(c_data.size()));
  ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
  ASSERT_TRUE(wait_until([&] { return results_have(status, "C sent ok"); }, 10s)) << "the server did not shut C down";
  // Some of A's counters, read before the dump.
  std::string a_counters;
  ASSERT_TRUE(wait_until(
      [&] {
        char buf[256];
        ssize_t n = ::recv(a.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) a_counters.append(buf, static_cast<size_t>(n));
        return a_counters.size() >= 80;
      },
      10s));
  std::this_thread::sleep_for(100ms);  // B's counters read, the FINs acknowledged
  EXPECT_EQ(tcp_state(a.get()), 5) << "A: the client's side should be FIN_WAIT2";
  EXPECT_EQ(tcp_state(b.get()), 8) << "B: the client's side should be CLOSE_WAIT";
  WorkloadStatus before = read_status(status);
  ASSERT_NE(before.kind, WorkloadStatus::Kind::kFail) << before.reason;

  const fs::path images = env.image_dir("halfclosed");
  ASSERT_TRUE(env.dump_pid(job.pid(), images, {"--tcp-established"}));
  ASSERT_TRUE(job.wait_exit(10s));
  // Sent while the job is gone: held by the lock, retransmitted until it is back.
  const std::string gap = counters(b_sent, 10);
  ASSERT_EQ(::send(b.get(), gap.data(), gap.size(), MSG_NOSIGNAL), static_cast<ssize_t>(gap.size()));
  b_sent += 10;
  const uint64_t n = std::max(before.progress, read_status(status).progress);

  Container restored(env, "halfclosed");
  ASSERT_TRUE(restored.restore(images, status)) << restored.last_output();
  ASSERT_TRUE(wait_for_progress(status, n + 5, 20s, nullptr, n));

  // B: the end stays, the client's counters go on, then its end closes it for good.
  char byte;
  EXPECT_EQ(::recv(b.get(), &byte, 1, MSG_DONTWAIT), 0) << "B: the end of stream is gone for the client";
  const std::string more = counters(b_sent, 10);
  ASSERT_EQ(::send(b.get(), more.data(), more.size(), MSG_NOSIGNAL), static_cast<ssize_t>(more.size()));
  ASSERT_EQ(::shutdown(b.get(), SHUT_WR), 0);
  EXPECT_TRUE(wait_until([&] { return results_have(status, "B ok"); }, 10s)) << read_status(status).raw;
  EXPECT_TRUE(wait_until([&] { return tcp_state(b.get()) == 7; }, 10s)) << "B: state " << tcp_state(b.get());
  EXPECT_EQ(socket_error(b.get()), 0) << "B saw an error (a reset?)";

  // C: the megabyte, then the end.
  auto [c_got, c_end] = read_to_end(c.get());
  EXPECT_TRUE(c_end) << "C: no end of stream after " << c_got.size() << " bytes";
  EXPECT_TRUE(c_got == pattern(1 << 20)) << "C: " << c_got.size() << " bytes, not the megabyte of the pattern";
  EXPECT_EQ(socket_error(c.get()), 0) << "C saw an error (a reset?)";

  // A: the server reads the client's data and end, then its counters end.
  std::ofstream(status.string() + ".go") << "go\n";
  auto [a_rest, a_end] = read_to_end(a.get());
  a_counters += a_rest;
  EXPECT_TRUE(a_end) << "A: no end of stream after " << a_counters.size() << " bytes";
  ASSERT_EQ(a_counters.size() % 8, 0u);
  EXPECT_TRUE(a_counters == counters(0, a_counters.size() / 8)) << "A: the counters are not consecutive";
  EXPECT_TRUE(wait_until([&] { return results_have(status, "A ok"); }, 10s)) << read_status(status).raw;
  EXPECT_EQ(socket_error(a.get()), 0) << "A saw an error (a reset?)";
  EXPECT_TRUE(keep_progressing(status, 500ms));
}

// --leave-running --tcp-established: the original's connections go on, the lock is gone.
TEST(CheckpointInetSockets, LeaveRunningKeepsTheConnections) {
  CheckpointEnv env;
  const int port = base_port() + 1005;
  const fs::path status = env.status_path("leave");
  HostProcess job;
  ASSERT_TRUE(job.start(c_workload("inet_echo", {"127.0.0.1", std::to_string(port), "inner"}), status));
  LockCleanup lock_cleanup(job.pid());
  const std::string lock_prefix = fmt::format("stasis_lock_{}_", job.pid());
  ASSERT_TRUE(wait_for_progress(status, 5, 10s));
  UniqueFd client = connect_to(AF_INET, port);
  ASSERT_TRUE(client);
  ASSERT_TRUE(echo(client.get(), "before\n"));
  ASSERT_TRUE(env.dump_pid(job.pid(), env.image_dir("leave"), {"--leave-running", "--tcp-established"}));
  ASSERT_TRUE(job.running());
  EXPECT_FALSE(nft_table_exists(lock_prefix));
  EXPECT_TRUE(echo(client.get(), "after\n"));
  EXPECT_EQ(tcp_state(client.get()), kTcpEstablished);
  EXPECT_EQ(socket_error(client.get()), 0);
  EXPECT_TRUE(keep_progressing(status, 1s));
}

// Sends msg and reads up to the first newline of the answer (or says what went wrong).
std::string ask_line(int s, const std::string& msg) {
  if (::send(s, msg.data(), msg.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size())) return "send failed";
  std::string got;
  while (got.find('\n') == std::string::npos) {
    pollfd p{s, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return "no answer: " + got;
    char buf[256];
    ssize_t k = ::recv(s, buf, sizeof buf, 0);
    if (k <= 0) return k < 0 ? std::string("recv: ") + strerror(errno) : "end of stream";
    got.append(buf, static_cast<size_t>(k));
  }
  return got;
}

// A python3 echo server (answers "echo:<line>"), a host process with two clients of the test
// connected: one that had its answer, one half way through a line. Dumped with
// --tcp-established, restored; each client's next line is answered on the same connection.
void check_python_echo_server(const std::string& script, int port) {
  CheckpointEnv env;
  const fs::path status = env.status_path("python");
  Workload w;
  w.name = script;
  w.program = {"/usr/bin/python3", std::string(STASIS_SOURCE_DIR) + "/tests/workloads/" + script + ".py"};
  w.args = {std::to_string(port)};
  w.start_timeout = 30s;
  HostProcess job;
  ASSERT_TRUE(job.start(w, status));
  LockCleanup lock_cleanup(job.pid());
  UniqueFd client, halfway;
  ASSERT_TRUE(wait_until([&] { return static_cast<bool>(client = connect_to(AF_INET, port)); }, 10s));
  ASSERT_TRUE(halfway = connect_to(AF_INET, port));
  ASSERT_EQ(ask_line(client.get(), "one\n"), "echo:one\n");
  ASSERT_EQ(::send(halfway.get(), "hal", 3, MSG_NOSIGNAL), 3);
  std::uint64_t n = read_status(status).progress;
  const fs::path images = env.image_dir("python");
  ASSERT_TRUE(env.dump_pid(job.pid(), images, {"--tcp-established"}));
  ASSERT_TRUE(job.wait_exit(10s));
  const WorkloadStatus last = read_status(status);
  ASSERT_NE(last.kind, WorkloadStatus::Kind::kFail) << last.reason;
  n = std::max(n, last.progress);
  Container restored(env, "python");
  ASSERT_TRUE(restored.restore(images, status)) << restored.last_output();
  ASSERT_TRUE(wait_for_progress(status, n + 5, 20s, &n, n));
  EXPECT_EQ(ask_line(client.get(), "two\n"), "echo:two\n");
  EXPECT_EQ(ask_line(halfway.get(), "f\n"), "echo:half\n");
  for (int s : {client.get(), halfway.get()}) {
    EXPECT_EQ(tcp_state(s), kTcpEstablished);
    EXPECT_EQ(socket_error(s), 0);
  }
  EXPECT_TRUE(keep_progressing(status, 1s));
}

// Python's own threading TCP server (socketserver).
TEST(CheckpointInetSockets, PythonThreadingServerKeepsItsClients) {
  check_python_echo_server("py_tcp_echo", base_port() + 1700);
}

// An asyncio TCP server that also talks to itself: its own client keeps lines in flight both
// ways on a connection whose two ends are both in the job (the workload checks every answer).
TEST(CheckpointInetSockets, PythonAsyncioServerKeepsItsClientsMidConversation) {
  check_python_echo_server("py_tcp_asyncio_echo", base_port() + 1710);
}

// A dump that fails once the connections are in repair mode and the lock is in place takes
// them out of repair mode and removes the lock: the job's connections go on.
TEST(CheckpointInetSockets, FailedDumpLeavesTheConnectionsWorking) {
  CheckpointEnv env;
  const int port = base_port() + 1500;
  const fs::path status = env.status_path("failed");
  HostProcess job;
  ASSERT_TRUE(job.start(c_workload("inet_echo", {"127.0.0.1", std::to_string(port), "inner"}), status));
  LockCleanup lock_cleanup(job.pid());
  const std::string lock_prefix = fmt::format("stasis_lock_{}_", job.pid());
  ASSERT_TRUE(wait_for_progress(status, 5, 10s));
  UniqueFd client = connect_to(AF_INET, port);
  ASSERT_TRUE(client);
  ASSERT_TRUE(echo(client.get(), "before\n"));
  ::setenv("STASIS_FAULT", "dump-after-tcp-repair", 1);
  auto r = env.stasis({"dump", "--pid", std::to_string(job.pid()), "-D", env.image_dir("failed").string(),
                       "--tcp-established"});
  ::unsetenv("STASIS_FAULT");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("injected fault"), std::string::npos) << r.err;
  ASSERT_TRUE(job.running());
  EXPECT_FALSE(nft_table_exists(lock_prefix));
  EXPECT_TRUE(echo(client.get(), "after\n"));
  EXPECT_EQ(tcp_state(client.get()), kTcpEstablished);
  EXPECT_EQ(socket_error(client.get()), 0);
  EXPECT_TRUE(keep_progressing(status, 1s));  // its inner stream goes on too
}

// A container on --net veth serving a client of the host: dumped with --tcp-established (the
// container and its namespace go), restored with its address; the client's connection goes
// on, and the server listens at the same address for new clients.
TEST(CheckpointInetSockets, ContainerOnVethKeepsItsClientAndListener) {
  CheckpointEnv env;
  const int port = base_port() + 2000;
  const std::string ip = fmt::format("10.215.{}.2", ::getpid() % 200 + 20);
  Container original(env, "veth");
  ASSERT_TRUE(original.run(c_workload("inet_echo", {"0.0.0.0", std::to_string(port), "inner"}),
                           {"--net", "veth", "--ip", ip + "/24"}))
      << original.last_output();
  UniqueFd client;
  ASSERT_TRUE(wait_until([&] { return static_cast<bool>(client = connect_to(AF_INET, port, ip.c_str())); }, 5s));
  ASSERT_TRUE(echo(client.get(), "before the dump\n"));
  std::uint64_t n = read_status(original.status()).progress;
  const fs::path images = env.image_dir("veth");
  ASSERT_TRUE(original.dump(images, {"--tcp-established"})) << original.last_output();
  ASSERT_TRUE(original.wait_gone());
  EXPECT_EQ(tcp_state(client.get()), kTcpEstablished);
  n = std::max(n, read_status(original.status()).progress);

  Container restored(env, "veth");
  ASSERT_TRUE(restored.restore(images, original.status())) << restored.last_output();
  ASSERT_TRUE(wait_for_progress(original.status(), n + 10, 20s, &n, n));
  EXPECT_TRUE(echo(client.get(), "after the restore\n"));
  EXPECT_EQ(tcp_state(client.get()), kTcpEstablished);
  EXPECT_EQ(socket_error(client.get()), 0) << "the client's connection saw an error (a reset?)";
  UniqueFd second = connect_to(AF_INET, port, ip.c_str());
  ASSERT_TRUE(second) << "nothing listens at " << ip << ":" << port << " after the restore";
  EXPECT_TRUE(echo(second.get(), "a new client\n"));
  EXPECT_TRUE(keep_progressing(original.status(), 1s));
}

// Sockets bound to the container's address, restored as a copy at another --ip: the restore
// fails naming the address; the original goes on.
TEST(CheckpointInetSockets, ListenerAtAnAddressGoneIsRefusedAtRestore) {
  CheckpointEnv env;
  const int port = base_port() + 2500;
  const int a = ::getpid() % 100 + 20;
  const std::string ip = fmt::format("10.217.{}.2", a);
  Container original(env, "bound");
  ASSERT_TRUE(original.run(c_workload("inet_echo", {ip, std::to_string(port)}), {"--net", "veth", "--ip", ip + "/24"}))
      << original.last_output();
  ASSERT_TRUE(original.dump(env.image_dir("bound"), {"--leave-running"})) << original.last_output();
  Container copy(env, "bound-copy");
  // The image holds the original's status file, which it rewrites all the time.
  std::vector<std::string> options = accept_rewritten_status(original.status());
  options.insert(options.end(), {"--ip", fmt::format("10.217.{}.2/24", a + 120)});
  EXPECT_FALSE(copy.restore(env.image_dir("bound"), env.status_path("copy"), options));
  const std::string& out = copy.last_output();
  EXPECT_NE(out.find(fmt::format("bound to {}:", ip)), std::string::npos) << out;
  EXPECT_NE(out.find("cannot work: that address is not in the restored network namespace"), std::string::npos) << out;
  EXPECT_TRUE(keep_progressing(original.status(), 500ms));

  // A TCP listener alone: bound for the while, and found missing before the job runs.
  Workload w;
  w.name = "py_tcp_echo";
  w.program = {"/usr/bin/python3", std::string(STASIS_SOURCE_DIR) + "/tests/workloads/py_tcp_echo.py"};
  w.args = {std::to_string(port), ip};
  w.start_timeout = 30s;
  original.remove();
  Container python(env, "bound-py");
  ASSERT_TRUE(python.run(w, {"--net", "veth", "--ip", ip + "/24"})) << python.last_output();
  ASSERT_TRUE(python.dump(env.image_dir("bound-py"), {"--leave-running"})) << python.last_output();
  Container python_copy(env, "bound-py-copy");
  std::vector<std::string> python_options = accept_rewritten_status(python.status());
  python_options.insert(python_options.end(), {"--ip", fmt::format("10.217.{}.2/24", a + 120)});
  EXPECT_FALSE(python_copy.restore(env.image_dir("bound-py"), env.status_path("python-copy"), python_options));
  EXPECT_NE(python_copy.last_output().find(fmt::format("socket bound to {}:{} cannot work: that address is not in the "
                                                       "restored network namespace",
                                                       ip, port)),
            std::string::npos)
      << python_copy.last_output();
}

}  // namespace
}  // namespace stasis::test
