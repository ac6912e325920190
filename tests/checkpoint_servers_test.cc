// Real servers no one here wrote, checkpointed with clients connected: redis-server (epoll,
// background threads, 100,000 keys) with a client and a pub/sub subscriber each holding a TCP
// connection, and nginx (a master and a worker, shared memory, a socketpair channel) with an
// HTTP/1.1 keep-alive connection. Each server runs in a `--net veth` container with a config of
// the test's in its work folder (never the system service, never daemonized); the clients are
// the test's own sockets, and must go on ON THE SAME CONNECTION after `dump --tcp-established`
// and `restore`, here and on a second "host" (docs/testing.md, "Servers and a moving address").
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/fd.h"
#include "tests/launcher_test_util.h"
#include "tests/support/checkpoint_harness.h"
#include "tests/support/second_host.h"
#include "tests/support/serve_process.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

constexpr int kKeys = 100000;
constexpr int kRedisPort = 6379;
constexpr int kHttpPort = 8080;

bool have(const char* path) { return ::access(path, X_OK) == 0; }

#define REQUIRE_PROGRAM(path)                                                                              \
  do {                                                                                                     \
    if (!have(path)) GTEST_SKIP() << path << " is not installed (Debian packages redis-server, redis-tools, " \
                                         "nginx-light; scripts/setup installs them)";                      \
  } while (0)

// A subnet for this test process's container on this host: 10.219.N.0/24.
std::string container_ip() { return fmt::format("10.219.{}.2", ::getpid() % 200 + 20); }

// A TCP connection to ip:port, made in network namespace `netns` (a path) when given; the
// socket stays in that namespace whatever thread uses it after.
UniqueFd connect_tcp(const std::string& ip, int port, const std::string& netns = "") {
  UniqueFd out;
  auto body = [&] {
    if (!netns.empty()) {
      UniqueFd ns(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
      if (!ns || ::setns(ns.get(), CLONE_NEWNET) < 0) return;
    }
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) out = std::move(s);
  };
  if (netns.empty()) body();
  else std::thread(body).join();  // setns in a thread of its own: the test's stays where it is
  return out;
}

// One RESP reply: "+OK" and "-ERR ..." as their text with the sign, integers as ":N", a bulk
// string as its bytes (nil as "(nil)"), an array as its elements.
struct Reply {
  std::string text;
  std::vector<Reply> items;
  bool is_array = false;
};

// A connection to a redis server speaking RESP, with a bound on every wait.
class Resp {
 public:
  explicit Resp(UniqueFd s) : s_(std::move(s)) {}
  bool connected() const { return static_cast<bool>(s_); }
  int fd() const { return s_.get(); }

  bool send(const std::vector<std::string>& args) {
    std::string wire = fmt::format("*{}\r\n", args.size());
    for (const auto& a : args) wire += fmt::format("${}\r\n{}\r\n", a.size(), a);
    return send_raw(wire);
  }
  bool send_raw(const std::string& wire) {
    for (size_t done = 0; done < wire.size();) {
      ssize_t n = ::send(s_.get(), wire.data() + done, wire.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  // The next reply, or nullopt (error_ says why) within 20 s.
  std::optional<Reply> read() {
    std::string line;
    if (!read_line(line)) return std::nullopt;
    Reply r;
    switch (line[0]) {
      case '+':
      case '-':
      case ':':
        r.text = line;
        return r;
      case '$': {
        const long len = std::stol(line.substr(1));
        if (len < 0) {
          r.text = "(nil)";
          return r;
        }
        if (!fill(static_cast<size_t>(len) + 2)) return std::nullopt;
        r.text = buf_.substr(0, static_cast<size_t>(len));
        buf_.erase(0, static_cast<size_t>(len) + 2);
        return r;
      }
      case '*': {
        r.is_array = true;
        for (long n = std::stol(line.substr(1)); n > 0; --n) {
          auto item = read();
          if (!item) return std::nullopt;
          r.items.push_back(std::move(*item));
        }
        return r;
      }
      default:
        error_ = "not a RESP reply: " + line;
        return std::nullopt;
    }
  }
  // Sends a command and returns its reply's text ("ERROR: ..." when none came).
  std::string call(const std::vector<std::string>& args) {
    if (!send(args)) return "ERROR: send: " + std::string(strerror(errno));
    auto r = read();
    return r ? r->text : "ERROR: " + error_;
  }
  const std::string& error() const { return error_; }

 private:
  bool fill(size_t want) {
    while (buf_.size() < want) {
      pollfd p{s_.get(), POLLIN, 0};
      if (::poll(&p, 1, 20000) != 1) {
        error_ = "no reply within 20 s";
        return false;
      }
      char chunk[65536];
      ssize_t n = ::recv(s_.get(), chunk, sizeof chunk, 0);
      if (n <= 0) {
        error_ = n < 0 ? std::string("recv: ") + strerror(errno) : "end of stream";
        return false;
      }
      buf_.append(chunk, static_cast<size_t>(n));
    }
    return true;
  }
  bool read_line(std::string& line) {
    size_t at;
    while ((at = buf_.find("\r\n")) == std::string::npos)
      if (!fill(buf_.size() + 1)) return false;
    line = buf_.substr(0, at);
    buf_.erase(0, at + 2);
    if (line.empty()) {
      error_ = "empty RESP line";
      return false;
    }
    return true;
  }

  UniqueFd s_;
  std::string buf_;
  std::string error_;
};

std::string key(int i) { return fmt::format("key:{}", i); }
std::string value(int i) { return fmt::format("value-{}-{:0>64}", i, i * 7919); }

// Loads kKeys keys with MSET, 1000 at a time, pipelined.
::testing::AssertionResult load_keys(Resp& c) {
  std::string wire;
  int commands = 0;
  for (int i = 0; i < kKeys; i += 1000) {
    std::vector<std::string> args{"MSET"};
    for (int j = i; j < i + 1000; ++j) {
      args.push_back(key(j));
      args.push_back(value(j));
    }
    wire += fmt::format("*{}\r\n", args.size());
    for (const auto& a : args) wire += fmt::format("${}\r\n{}\r\n", a.size(), a);
    ++commands;
  }
  if (!c.send_raw(wire)) return ::testing::AssertionFailure() << "sending the keys failed";
  for (int i = 0; i < commands; ++i) {
    auto r = c.read();
    if (!r || r->text != "+OK")
      return ::testing::AssertionFailure() << "MSET " << i << ": " << (r ? r->text : c.error());
  }
  return ::testing::AssertionSuccess();
}

// The data is all there: DBSIZE, and every 997th key with its value.
::testing::AssertionResult data_intact(Resp& c) {
  const std::string size = c.call({"DBSIZE"});
  if (size != fmt::format(":{}", kKeys)) return ::testing::AssertionFailure() << "DBSIZE " << size;
  for (int i = 0; i < kKeys; i += 997) {
    const std::string v = c.call({"GET", key(i)});
    if (v != value(i)) return ::testing::AssertionFailure() << "GET " << key(i) << ": " << v;
  }
  return ::testing::AssertionSuccess();
}

// The subscriber's next message is ["message", channel, text] within the bound.
::testing::AssertionResult receives(Resp& sub, const std::string& channel, const std::string& text) {
  auto r = sub.read();
  if (!r) return ::testing::AssertionFailure() << "the subscriber got nothing: " << sub.error();
  if (!r->is_array || r->items.size() != 3 || r->items[0].text != "message" || r->items[1].text != channel ||
      r->items[2].text != text)
    return ::testing::AssertionFailure() << "the subscriber got something else than \"" << text << "\" ("
                                         << (r->items.size() == 3 ? r->items[2].text : r->text) << ")";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult connection_intact(int s) {
  if (tcp_state(s) != 1) return ::testing::AssertionFailure() << "TCP state " << tcp_state(s) << ", not established";
  if (int err = socket_error(s)) return ::testing::AssertionFailure() << "socket error " << strerror(err) << " (a reset?)";
  return ::testing::AssertionSuccess();
}

// redis.conf in dir: a server of the test's, in the foreground, nothing saved to disk.
fs::path write_redis_config(const fs::path& dir) {
  const fs::path conf = dir / "redis.conf";
  std::ofstream(conf) << fmt::format(
      "port {}\nbind 0.0.0.0\nprotected-mode no\ndaemonize no\nsupervised no\nsave \"\"\nappendonly no\n"
      "dir {}\nlogfile {}\n",
      kRedisPort, dir.string(), (dir / "redis.log").string());
  return conf;
}

// The last `limit` bytes of a file (all of it with a large limit).
std::string file_tail(const fs::path& path, size_t limit = 2000) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text.size() > limit ? text.substr(text.size() - limit) : text;
}

// Wall time of fn in milliseconds.
template <typename Fn>
long long timed(Fn&& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
}

// The clients of a redis server: one sending commands, one subscribed to a channel.
struct RedisClients {
  Resp client{UniqueFd()};
  Resp sub{UniqueFd()};
  std::string channel = "news";
};

// Connects (within 10 s, the server starting), loads the keys, subscribes, and checks a first
// message reaches the subscriber.
void connect_and_load(RedisClients& c, const std::string& ip, const std::string& netns, const fs::path& log) {
  ASSERT_TRUE(wait_until(
      [&] {
        c.client = Resp(connect_tcp(ip, kRedisPort, netns));
        return c.client.connected() && c.client.call({"PING"}) == "+PONG";
      },
      10s))
      << "redis-server does not answer at " << ip << ":" << kRedisPort << "\n"
      << file_tail(log);
  ASSERT_TRUE(load_keys(c.client));
  c.sub = Resp(connect_tcp(ip, kRedisPort, netns));
  ASSERT_TRUE(c.sub.connected());
  ASSERT_TRUE(c.sub.send({"SUBSCRIBE", c.channel}));
  auto r = c.sub.read();
  ASSERT_TRUE(r && r->is_array && r->items.size() == 3 && r->items[0].text == "subscribe") << c.sub.error();
  ASSERT_EQ(c.client.call({"PUBLISH", c.channel, "before"}), ":1");
  ASSERT_TRUE(receives(c.sub, c.channel, "before"));
  ASSERT_TRUE(data_intact(c.client));
}

// After the restore: both clients go on, on their own connections.
void check_clients_go_on(RedisClients& c, const std::string& what) {
  EXPECT_TRUE(connection_intact(c.client.fd())) << "client";
  EXPECT_TRUE(connection_intact(c.sub.fd())) << "subscriber";
  EXPECT_EQ(c.client.call({"PING"}), "+PONG") << "the client's next command on its connection";
  EXPECT_TRUE(data_intact(c.client));
  EXPECT_EQ(c.client.call({"SET", "after", what}), "+OK");
  EXPECT_EQ(c.client.call({"GET", "after"}), what);
  EXPECT_EQ(c.client.call({"PUBLISH", c.channel, what}), ":1") << "the subscriber is not subscribed any more";
  EXPECT_TRUE(receives(c.sub, c.channel, what));
}

// redis-server in container `name` on --net veth at ip, here, with its keys and clients.
void start_redis_here(CheckpointEnv& env, const std::string& name, const std::string& ip, RedisClients& c) {
  const fs::path conf = write_redis_config(env.work());
  CommandResult r = env.stasis(
      {"run", "-d", "--net", "veth", "--ip", ip + "/24", "--name", name, "--", "/usr/bin/redis-server", conf.string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_NO_FATAL_FAILURE(connect_and_load(c, ip, "", env.work() / "redis.log"));
}

TEST(CheckpointServers, RedisKeepsItsClientsAndDataAcrossDumpAndRestore) {
  REQUIRE_PROGRAM("/usr/bin/redis-server");
  CheckpointEnv env;
  const std::string name = env.unique_name("redis");
  ContainerGuard guard(env.root(), name);
  const std::string ip = container_ip();
  RedisClients c;
  ASSERT_NO_FATAL_FAILURE(start_redis_here(env, name, ip, c));
  CommandResult r;

  const fs::path images = env.image_dir("redis");
  long long dump_ms = timed([&] { r = env.stasis({"dump", name, "-D", images.string(), "--tcp-established"}, 120s); });
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(connection_intact(c.client.fd())) << "while the server is gone";
  long long restore_ms = timed([&] { r = env.stasis({"restore", "-D", images.string(), "--name", name, "-d"}, 120s); });
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::cout << fmt::format("[   time   ] redis with {} keys: dump {} ms, restore {} ms\n", kKeys, dump_ms, restore_ms);
  check_clients_go_on(c, "after the restore");
  Resp fresh(connect_tcp(ip, kRedisPort));
  ASSERT_TRUE(fresh.connected()) << "nothing listens at " << ip << ":" << kRedisPort << " after the restore";
  EXPECT_EQ(fresh.call({"DBSIZE"}), fmt::format(":{}", kKeys + 1));
}

TEST(CheckpointServers, RedisLeftRunningKeepsItsClients) {
  REQUIRE_PROGRAM("/usr/bin/redis-server");
  CheckpointEnv env;
  const std::string name = env.unique_name("redis-lr");
  ContainerGuard guard(env.root(), name);
  const std::string ip = container_ip();
  RedisClients c;
  ASSERT_NO_FATAL_FAILURE(start_redis_here(env, name, ip, c));
  CommandResult r;
  const fs::path images = env.image_dir("redis-lr");
  r = env.stasis({"dump", name, "-D", images.string(), "--tcp-established", "--leave-running"}, 120s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  check_clients_go_on(c, "after a dump that left it running");
}

// nginx.conf in dir: master and one worker in the foreground, files and temporary folders
// under dir, a static file at /index.html, long keep-alive.
fs::path write_nginx_config(const fs::path& dir, const std::string& body) {
  fs::create_directories(dir / "www");
  std::ofstream(dir / "www" / "index.html") << body;
  const fs::path conf = dir / "nginx.conf";
  const std::string d = dir.string();
  std::ofstream(conf) << fmt::format(
      "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root root;\npid {0}/nginx.pid;\n"
      "error_log {0}/error.log info;\nevents {{ worker_connections 64; }}\n"
      "http {{\n  access_log off;\n  keepalive_timeout 600s;\n  keepalive_requests 10000;\n"
      "  client_body_temp_path {0}/body;\n  proxy_temp_path {0}/proxy;\n  fastcgi_temp_path {0}/fastcgi;\n"
      "  uwsgi_temp_path {0}/uwsgi;\n  scgi_temp_path {0}/scgi;\n"
      "  server {{ listen {1}; root {0}/www; }}\n}}\n",
      d, kHttpPort);
  return conf;
}

// GET /index.html on a keep-alive connection: the body, or "ERROR: ...".
std::string http_get(int s) {
  const std::string req = "GET /index.html HTTP/1.1\r\nHost: test\r\nConnection: keep-alive\r\n\r\n";
  if (::send(s, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
    return std::string("ERROR: send: ") + strerror(errno);
  std::string got;
  size_t head_end = std::string::npos, length = 0;
  for (;;) {
    if (head_end == std::string::npos && (head_end = got.find("\r\n\r\n")) != std::string::npos) {
      const size_t at = got.find("Content-Length: ");
      if (got.compare(0, 12, "HTTP/1.1 200") != 0 || at == std::string::npos || at > head_end)
        return "ERROR: " + got.substr(0, head_end);
      length = std::stoul(got.substr(at + 16));
      head_end += 4;
    }
    if (head_end != std::string::npos && got.size() >= head_end + length) return got.substr(head_end, length);
    pollfd p{s, POLLIN, 0};
    if (::poll(&p, 1, 20000) != 1) return "ERROR: no answer within 20 s: " + got;
    char buf[4096];
    ssize_t n = ::recv(s, buf, sizeof buf, 0);
    if (n <= 0) return n < 0 ? std::string("ERROR: recv: ") + strerror(errno) : "ERROR: end of stream: " + got;
    got.append(buf, static_cast<size_t>(n));
  }
}

TEST(CheckpointServers, NginxKeepsAKeepAliveConnection) {
  REQUIRE_PROGRAM("/usr/sbin/nginx");
  CheckpointEnv env;
  const std::string name = env.unique_name("nginx");
  ContainerGuard guard(env.root(), name);
  const std::string ip = container_ip();
  const std::string body = fmt::format("<html>static file of test {}</html>\n", ::getpid());
  const fs::path conf = write_nginx_config(env.work(), body);
  CommandResult r = env.stasis({"run", "-d", "--net", "veth", "--ip", ip + "/24", "--name", name, "--",
                                "/usr/sbin/nginx", "-p", env.work().string(), "-c", conf.string(), "-e",
                                (env.work() / "error.log").string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  UniqueFd client;
  ASSERT_TRUE(wait_until([&] { return static_cast<bool>(client = connect_tcp(ip, kHttpPort)); }, 10s))
      << "nginx does not answer at " << ip << ":" << kHttpPort << "\n"
      << file_tail(env.work() / "error.log");
  ASSERT_EQ(http_get(client.get()), body);
  ASSERT_EQ(http_get(client.get()), body) << "not kept alive";

  const fs::path images = env.image_dir("nginx");
  r = env.stasis({"dump", name, "-D", images.string(), "--tcp-established"}, 120s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  r = env.stasis({"restore", "-D", images.string(), "--name", name, "-d"}, 120s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(http_get(client.get()), body) << "the next request on the same connection\n"
                                          << file_tail(env.work() / "error.log");
  EXPECT_TRUE(connection_intact(client.get()));
  UniqueFd fresh = connect_tcp(ip, kHttpPort);
  ASSERT_TRUE(fresh) << "nothing listens at " << ip << ":" << kHttpPort << " after the restore";
  EXPECT_EQ(http_get(fresh.get()), body);
  EXPECT_EQ(http_get(client.get()), body);

  // The master still commands its worker over their channel (a unix socketpair whose ends the
  // two processes share): a reload (SIGHUP) ends the old worker gracefully, without an alert.
  const size_t seen = file_tail(env.work() / "error.log", 1 << 30).size();
  r = env.stasis({"exec", name, "--", "/usr/bin/kill", "-HUP", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(wait_until(
      [&] { return file_tail(env.work() / "error.log", 1 << 30).find("gracefully shutting down", seen) != std::string::npos; },
      10s))
      << file_tail(env.work() / "error.log");
  const std::string log = file_tail(env.work() / "error.log", 1 << 30).substr(seen);
  EXPECT_EQ(log.find("[alert]"), std::string::npos) << log;
  UniqueFd after_reload = connect_tcp(ip, kHttpPort);
  ASSERT_TRUE(after_reload);
  EXPECT_EQ(http_get(after_reload.get()), body);
}

// Three network namespaces of the test's: hosts A and B, and a client linked to both. The
// client 10.9.0.2 (on its loopback) reaches A by 10.9.1.0/24 and B by 10.9.2.0/24; both hosts
// forward and route the client's address back over their link; A and B are linked too
// (10.9.3.1 and 10.9.3.2), for a migration. The client's route to the containers' subnet
// goes through A until the address moves.
struct ThreeHosts {
  SecondHost a{"srvA"}, b{"srvB"};
  NetNamespace client{"srvC"};

  ::testing::AssertionResult link() {
    for (auto ready : {a.ready(), b.ready(), client.ready()})
      if (!ready) return ready;
    CommandResult r = client.sh(fmt::format(
        "set -e; ip link set lo up; ip addr add 10.9.0.2/32 dev lo;"
        "ip link add toA type veth peer name toC netns {0}; ip link add toB type veth peer name toC netns {1};"
        "ip addr add 10.9.1.2/24 dev toA; ip addr add 10.9.2.2/24 dev toB; ip link set toA up; ip link set toB up;"
        "ip route add {2}.0/24 via 10.9.1.1 src 10.9.0.2",
        a.netns(), b.netns(), subnet));
    if (r.exit_code != 0) return ::testing::AssertionFailure() << "client: " << r.err;
    for (auto [host, n] : {std::pair{&a, 1}, std::pair{&b, 2}}) {
      r = host->ns().sh(fmt::format(
          "set -e; ip link set lo up; ip addr add 10.9.{0}.1/24 dev toC; ip link set toC up;"
          "ip route add 10.9.0.2/32 via 10.9.{0}.2; sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0",
          n));
      if (r.exit_code != 0) return ::testing::AssertionFailure() << "host " << n << ": " << r.err;
    }
    r = a.ns().sh(fmt::format("set -e; ip link add toB type veth peer name toA netns {0}; "
                              "ip addr add 10.9.3.1/24 dev toB; ip link set toB up",
                              b.netns()));
    if (r.exit_code != 0) return ::testing::AssertionFailure() << "A to B: " << r.err;
    r = b.ns().sh("set -e; ip addr add 10.9.3.2/24 dev toA; ip link set toA up");
    if (r.exit_code != 0) return ::testing::AssertionFailure() << "B to A: " << r.err;
    return ::testing::AssertionSuccess();
  }
  // The containers' address moves: the client's route to it now goes through B.
  bool move_address_to_b() {
    return client.sh(fmt::format("ip route replace {}.0/24 via 10.9.2.1 src 10.9.0.2", subnet)).exit_code == 0;
  }
  static constexpr const char* subnet = "10.8.0";
  static constexpr const char* ip = "10.8.0.2";
};

// redis-server in --net veth container `name` on host A at ThreeHosts::ip, its keys loaded
// and its client and subscriber connected from the client's namespace.
void start_redis_on_a(CheckpointEnv& env, ThreeHosts& hosts, const std::string& name, RedisClients& c) {
  const fs::path conf = write_redis_config(env.work());
  CommandResult r = hosts.a.make_container({"run", "-d", "--net", "veth", "--ip", std::string(ThreeHosts::ip) + "/24",
                                            "--name", name, "--", "/usr/bin/redis-server", conf.string()},
                                           name);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_NO_FATAL_FAILURE(connect_and_load(c, ThreeHosts::ip, hosts.client.path(), env.work() / "redis.log"));
}

// redis in a --net veth container on host A, with a client and a subscriber: a checkpoint
// dumped there with --tcp-established is restored on host B at the same address, and the
// client's connections (the same sockets throughout) go on.
TEST(CheckpointServers, RedisOnASecondHostKeepsItsClientsAtTheSameAddress) {
  REQUIRE_PROGRAM("/usr/bin/redis-server");
  CheckpointEnv env;
  ThreeHosts hosts;
  ASSERT_TRUE(hosts.link());
  const std::string name = env.unique_name("redis-moves");
  RedisClients c;
  ASSERT_NO_FATAL_FAILURE(start_redis_on_a(env, hosts, name, c));
  CommandResult r;

  const fs::path images = env.image_dir("redis-moves");
  r = hosts.a.stasis({"dump", name, "-D", images.string(), "--tcp-established"}, 120s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(hosts.move_address_to_b());
  r = hosts.b.restore(images, name);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::optional<pid_t> init = hosts.b.init_pid(name);
  ASSERT_TRUE(init);
  check_clients_go_on(c, "after the move to host B");
  EXPECT_TRUE(hosts.a.stasis({"ps", "-a"}).out.find(name) == std::string::npos) << "the container is still on host A";
}

// The same move in one command: `stasis migrate --tcp-established` from A to a `stasis serve`
// on B (pre-copy rounds while redis serves, then the final state); held silent on A by the
// network lock until removed there, the connections go on at B. Refused without the option,
// or by the destination, the move leaves redis serving its clients at A.
TEST(CheckpointServers, RedisMigratedToASecondHostKeepsItsClientsAtTheSameAddress) {
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  REQUIRE_PROGRAM("/usr/bin/redis-server");
  CheckpointEnv env;
  ThreeHosts hosts;
  ASSERT_TRUE(hosts.link());
  Server server(hosts.b.root(), setup_with("", "", hosts.b.netns(), "10.9.3.2"));
  ASSERT_GT(server.port(), 0) << "stasis serve did not start on host B: " << server.log();
  const std::string name = env.unique_name("redis-migrates");
  server.will_hold(name);
  RedisClients c;
  ASSERT_NO_FATAL_FAILURE(start_redis_on_a(env, hosts, name, c));
  CommandResult r;

  // Without the option the connections are refused by name, and redis runs on at A.
  r = hosts.a.stasis({"migrate", name, "--to", server.address(), "--plaintext"}, 120s);
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("is an established connection"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.err.find("stasis migrate takes --tcp-established"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.err.find("runs on here"), std::string::npos) << r.out << r.err;
  check_clients_go_on(c, "after a refused migration");
  EXPECT_EQ(c.client.call({"DEL", "after"}), ":1");  // the key count again as loaded

  // A destination that refuses (the name is taken there) once the connections were locked:
  // the lock goes, redis is thawed and serves its clients on at A.
  r = hosts.b.make_container({"run", "-d", "--name", name, "--", "/bin/sleep", "1000"}, name);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  r = hosts.a.stasis({"migrate", name, "--to", server.address(), "--plaintext", "--tcp-established"}, 120s);
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("runs on here"), std::string::npos) << r.out << r.err;
  check_clients_go_on(c, "after a migration the destination refused");
  EXPECT_EQ(c.client.call({"DEL", "after"}), ":1");
  r = hosts.b.stasis({"rm", "-f", name});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  r = hosts.a.stasis({"migrate", name, "--to", server.address(), "--plaintext", "--tcp-established"}, 120s);
  std::printf("%s", r.out.c_str());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << server.log();
  ASSERT_TRUE(hosts.move_address_to_b());
  check_clients_go_on(c, "after the migration to host B");
  EXPECT_TRUE(hosts.a.stasis({"ps", "-a"}).out.find(name) == std::string::npos) << "the container is still on host A";
  EXPECT_NE(server.stasis({"ps", "-a"}).out.find(name), std::string::npos) << "the container is not on host B";
}

}  // namespace
}  // namespace stasis::test
