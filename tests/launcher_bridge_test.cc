// --net bridge: containers on the host bridge stasis0, published ports (-p), NAT to a server in
// a network namespace of the test, and checkpoint/restore of a bridged container. Traffic stays
// on this machine: loopback, the bridge, and the test's own namespace and veth pair.
#include <gtest/gtest.h>
#include <fmt/format.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

const fs::path kLeases = "/run/stasis/bridge";

// A host port of this test run, away from the usual ones.
int host_port(int k) { return 20000 + (::getpid() % 4000) * 8 + k; }

// A field of a container in `stasis ps --json` ("ip_cidr", "host_ifname").
std::string json_field(const CheckpointEnv& env, const std::string& name, const std::string& field) {
  CommandResult ps = env.stasis({"ps", "-a", "--json"}, 20s);
  size_t at = ps.out.find("\"name\": \"" + name + "\"");
  if (at == std::string::npos) return "";
  const std::string key = "\"" + field + "\": \"";
  at = ps.out.find(key, at);
  if (at == std::string::npos) return "";
  at += key.size();
  return ps.out.substr(at, ps.out.find('"', at) - at);
}

std::string address_of(const CheckpointEnv& env, const std::string& name) {
  std::string cidr = json_field(env, name, "ip_cidr");
  return cidr.substr(0, cidr.find('/'));
}

bool link_exists(const std::string& ifname) {
  return !ifname.empty() && run_command({"ip", "-o", "link", "show", ifname}).exit_code == 0;
}

// Our table as libnftables lists it (through the helper beside stasis), "" when there is none.
std::string nat_table() {
  fs::path helper = fs::path(stasis_binary()).parent_path() / "stasis-nft";
  std::string script = fmt::format("echo 'list table ip stasis' | {} 2>/dev/null", helper.string());
  return run_command({"sh", "-c", script}).out;
}

// Leases of addresses held by anyone (this test or another running at the same time).
bool any_address_lease() {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(kLeases, ec))
    if (e.path().filename().string().rfind("ip-", 0) == 0) return true;
  return false;
}

// What a removed container must not leave: its host link, its ports in the NAT map, its
// leases; and the bridge and table, once no container holds an address.
::testing::AssertionResult nothing_left(const std::string& link, const std::vector<int>& ports,
                                        const std::string& address, const std::string& name) {
  if (link_exists(link)) return ::testing::AssertionFailure() << "link " << link << " left behind";
  std::string table = nat_table();
  for (int port : ports) {
    if (table.find(fmt::format("{} :", port)) != std::string::npos)
      return ::testing::AssertionFailure() << "port " << port << " still in the NAT map:\n" << table;
    if (fs::exists(kLeases / fmt::format("tcp-{}", port)))
      return ::testing::AssertionFailure() << "lease of port " << port << " left behind";
  }
  // Another container (of a test running meanwhile) may have the address by now.
  if (!address.empty() && fs::exists(kLeases / ("ip-" + address)) &&
      read_text(kLeases / ("ip-" + address)).find("\n" + name + "\n") != std::string::npos)
    return ::testing::AssertionFailure() << "lease of address " << address << " left behind";
  // Under the bridge's lock (a container starting meanwhile makes the bridge before its lease),
  // a few times over 3 s: the last container's removal may still be under way.
  std::string left;
  for (int attempt = 0; attempt < 30; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(100ms);
    int lock = ::open((kLeases / ".lock").c_str(), O_RDONLY | O_CLOEXEC);
    if (lock >= 0) ::flock(lock, LOCK_EX);
    left.clear();
    if (!any_address_lease()) {
      if (link_exists("stasis0")) {
        left = "bridge stasis0 left behind" +
               run_command({"sh", "-c", "ls -la /run/stasis/bridge; ip -o link show master stasis0; cat /run/stasis/bridge/*"})
                   .out;
      } else if (!nat_table().empty()) {
        left = "table ip stasis left behind";
      }
    }
    if (lock >= 0) ::close(lock);
    if (left.empty()) break;
  }
  if (!left.empty()) return ::testing::AssertionFailure() << left;
  return ::testing::AssertionSuccess();
}

// GET url from the host with python3's urllib, retried while the server starts (up to 15 s).
CommandResult http_get(const std::string& url) {
  const std::string script = fmt::format(
      "import time, urllib.request\n"
      "for i in range(150):\n"
      "    try:\n"
      "        print(urllib.request.urlopen('{}', timeout=2).read().decode(), end='')\n"
      "        break\n"
      "    except Exception as e:\n"
      "        err = e\n"
      "        time.sleep(0.1)\n"
      "else:\n"
      "    raise SystemExit(str(err))\n",
      url);
  return run_command({"python3", "-c", script}, 30s);
}

// What the host's side of the network looks like, for failure messages.
std::string network_report(const std::string& link) {
  return run_command({"sh", "-c",
                      "echo; ip -o link show master stasis0; ip -o -4 addr show stasis0; ip -o link show " + link +
                          "; cat /proc/sys/net/ipv4/ip_forward; ls /run/stasis/bridge"})
             .out +
         nat_table();
}

// A TCP round trip: launcher_tcp server in the container (stasis exec), client from the host.
::testing::AssertionResult echo_through(const CheckpointEnv& env, const std::string& name, const std::string& bind,
                                        int container_port, const std::string& connect_ip, int connect_port) {
  CommandResult server;
  std::thread t([&] {
    server = env.stasis({"exec", name, "--", workload("launcher_tcp"), "server", bind, std::to_string(container_port)},
                        30s);
  });
  CommandResult client =
      run_command({workload("launcher_tcp"), "client", connect_ip, std::to_string(connect_port), name}, 20s);
  if (client.exit_code != 0) {
    // Unblock a server that got no client.
    run_command({workload("launcher_tcp"), "client", bind, std::to_string(container_port), "x"}, 5s);
  }
  t.join();
  if (client.exit_code == 0 && client.out == "echo:" + name + "\n") return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << name << " via " << connect_ip << ":" << connect_port << ": client exit "
                                       << client.exit_code << " '" << client.out << client.err << "', server exit "
                                       << server.exit_code << " '" << server.out << server.err << "'";
}

// A network namespace of the test joined to the host by a veth pair: host side .1, inside .2
// of 10.231.N.0/24. Removed (with the pair) whatever happens.
class TestNetns {
 public:
  TestNetns() {
    const int n = ::getpid() % 200 + 10;
    name_ = fmt::format("stasis-bt-{}", ::getpid());
    host_link_ = fmt::format("sbt{}h", ::getpid() % 100000);
    host_ip_ = fmt::format("10.231.{}.1", n);
    inside_ip_ = fmt::format("10.231.{}.2", n);
    cleanup();
    ok_ = sh(fmt::format("ip netns add {ns} && ip link add {h} type veth peer name eth0 netns {ns} && "
                         "ip addr add {hip}/24 dev {h} && ip link set {h} up && "
                         "ip -n {ns} addr add {iip}/24 dev eth0 && ip -n {ns} link set eth0 up && "
                         "ip -n {ns} link set lo up",
                         fmt::arg("ns", name_), fmt::arg("h", host_link_), fmt::arg("hip", host_ip_),
                         fmt::arg("iip", inside_ip_)));
  }
  ~TestNetns() { cleanup(); }
  bool ok() const { return ok_; }
  const std::string& name() const { return name_; }
  const std::string& host_ip() const { return host_ip_; }
  const std::string& inside_ip() const { return inside_ip_; }
  const std::string& host_link() const { return host_link_; }
  bool exists() const { return fs::exists("/run/netns/" + name_) || link_exists(host_link_); }

 private:
  static bool sh(const std::string& script) { return run_command({"sh", "-c", script}, 20s).exit_code == 0; }
  void cleanup() {
    sh(fmt::format("ip link del {} 2>/dev/null; ip netns del {} 2>/dev/null; true", host_link_, name_));
  }
  std::string name_, host_link_, host_ip_, inside_ip_;
  bool ok_ = false;
};

// A job that only waits, for containers whose servers come through `stasis exec`.
std::vector<std::string> sleeper(const CheckpointEnv& env, const std::string& name, std::vector<std::string> opts) {
  std::vector<std::string> argv{"run", "-d", "--name", name, "--net", "bridge"};
  argv.insert(argv.end(), opts.begin(), opts.end());
  argv.insert(argv.end(), {"--", "sleep", "600"});
  (void)env;
  return argv;
}

struct RemoveOnExit {
  const CheckpointEnv& env;
  std::vector<std::string> names;
  ~RemoveOnExit() {
    for (const auto& n : names) env.stasis({"rm", "-f", n}, 30s);
  }
};

TEST(LauncherBridge, PublishedHttpServerIsFetchedFromTheHost) {
  CheckpointEnv env;
  const std::string name = env.unique_name("http");
  RemoveOnExit guard{env, {name}};
  const int port = host_port(0);
  std::ofstream(env.work() / "index.txt") << "served by " << name << "\n";
  auto r = env.stasis({"run", "-d", "--name", name, "--net", "bridge", "-p", fmt::format("{}:8000", port),
                       "--workdir", env.work().string(), "--", "python3", "-m", "http.server", "8000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string link = json_field(env, name, "host_ifname"), ip = address_of(env, name);
  ASSERT_FALSE(ip.empty());
  EXPECT_TRUE(link_exists(link));
  // 127.0.0.1 and the host's own address on the bridge (the gateway) both lead in.
  const std::string gateway = json_field(env, name, "host_ip");
  for (const std::string& host : {std::string("127.0.0.1"), gateway.substr(0, gateway.find('/'))}) {
    CommandResult got = http_get(fmt::format("http://{}:{}/index.txt", host, port));
    EXPECT_EQ(got.exit_code, 0) << host << ": " << got.err;
    EXPECT_EQ(got.out, "served by " + name + "\n") << host;
  }
  // /etc/hosts inside names the container.
  r = env.stasis({"exec", name, "--", "cat", "/etc/hosts"});
  EXPECT_NE(r.out.find(ip + "\t" + name), std::string::npos) << r.out;
  // A second container cannot publish the same host port.
  const std::string other = env.unique_name("http2");
  guard.names.push_back(other);
  r = env.stasis(sleeper(env, other, {"-p", fmt::format("{}:80", port)}));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("is published by container " + name), std::string::npos) << r.err;

  ASSERT_EQ(env.stasis({"rm", "-f", name}).exit_code, 0);
  EXPECT_TRUE(nothing_left(link, {port}, ip, name));
}

TEST(LauncherBridge, TwoContainersStartedAtOnceGetTheirOwnAddressesAndTalk) {
  CheckpointEnv env;
  const std::string a = env.unique_name("peer"), b = env.unique_name("peer");
  RemoveOnExit guard{env, {a, b}};
  CommandResult ra, rb;
  std::thread ta([&] { ra = env.stasis(sleeper(env, a, {})); });
  std::thread tb([&] { rb = env.stasis(sleeper(env, b, {})); });
  ta.join();
  tb.join();
  ASSERT_EQ(ra.exit_code, 0) << ra.err;
  ASSERT_EQ(rb.exit_code, 0) << rb.err;
  const std::string ip_a = address_of(env, a), ip_b = address_of(env, b);
  ASSERT_FALSE(ip_a.empty());
  ASSERT_FALSE(ip_b.empty());
  EXPECT_NE(ip_a, ip_b);
  // b connects to a server in a, on the bridge.
  CommandResult server;
  std::thread t([&] { server = env.stasis({"exec", a, "--", workload("launcher_tcp"), "server", ip_a, "7777"}, 30s); });
  CommandResult client = env.stasis({"exec", b, "--", workload("launcher_tcp"), "client", ip_a, "7777", b}, 20s);
  if (client.exit_code != 0) run_command({workload("launcher_tcp"), "client", ip_a, "7777", "x"}, 5s);
  t.join();
  EXPECT_EQ(client.exit_code, 0) << client.err;
  EXPECT_EQ(client.out, "echo:" + b + "\n") << server.err;
  const std::string link_a = json_field(env, a, "host_ifname"), link_b = json_field(env, b, "host_ifname");
  ASSERT_EQ(env.stasis({"rm", "-f", a}).exit_code, 0);
  EXPECT_FALSE(link_exists(link_a));
  EXPECT_TRUE(link_exists("stasis0")) << "the bridge went while " << b << " is on it";
  ASSERT_EQ(env.stasis({"rm", "-f", b}).exit_code, 0);
  EXPECT_TRUE(nothing_left(link_a, {}, ip_a, a));
  EXPECT_TRUE(nothing_left(link_b, {}, ip_b, b));
}

TEST(LauncherBridge, ReachesAServerInAnotherNamespaceThroughNatAndServesIt) {
  CheckpointEnv env;
  TestNetns netns;
  ASSERT_TRUE(netns.ok());
  const std::string name = env.unique_name("nat");
  RemoveOnExit guard{env, {name}};
  const int port = host_port(1);
  ASSERT_EQ(env.stasis(sleeper(env, name, {"-p", fmt::format("{}:7000", port)})).exit_code, 0);
  const std::string ip = address_of(env, name), link = json_field(env, name, "host_ifname");
  ASSERT_FALSE(ip.empty());

  // Out: the server in the namespace sees the host's address on its link (masquerade).
  const std::string serve_once = fmt::format(
      "import socket\n"
      "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
      "s.bind(('{}', 8111)); s.listen(1); s.settimeout(20)\n"
      "c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()\n",
      netns.inside_ip());
  CommandResult server;
  std::thread t([&] { server = run_command({"ip", "netns", "exec", netns.name(), "python3", "-c", serve_once}, 30s); });
  const std::string fetch = fmt::format(
      "import socket, time\n"
      "for i in range(100):\n"
      "    try:\n"
      "        s = socket.create_connection(('{}', 8111), 2); break\n"
      "    except OSError:\n"
      "        time.sleep(0.1)\n"
      "print(s.recv(100).decode())\n",
      netns.inside_ip());
  CommandResult client = env.stasis({"exec", name, "--", "python3", "-c", fetch}, 30s);
  t.join();
  EXPECT_EQ(client.exit_code, 0) << client.err;
  EXPECT_EQ(client.out, netns.host_ip() + "\n") << "server: " << server.err << network_report(link);

  // In: a client in the namespace reaches the published port at the host's address.
  CommandResult echo_server;
  std::thread t2([&] {
    echo_server = env.stasis({"exec", name, "--", workload("launcher_tcp"), "server", "0.0.0.0", "7000"}, 30s);
  });
  CommandResult echo = run_command({"ip", "netns", "exec", netns.name(), workload("launcher_tcp"), "client",
                                    netns.host_ip(), std::to_string(port), "from-netns"},
                                   20s);
  if (echo.exit_code != 0) run_command({workload("launcher_tcp"), "client", ip, "7000", "x"}, 5s);
  t2.join();
  EXPECT_EQ(echo.out, "echo:from-netns\n") << echo.err << echo_server.err;

  ASSERT_EQ(env.stasis({"rm", "-f", name}).exit_code, 0);
  EXPECT_TRUE(nothing_left(link, {port}, ip, name));
}

TEST(LauncherBridge, CheckpointRestoreKeepsAddressAndPublishedPort) {
  CheckpointEnv env;
  const int port = host_port(2);
  Container original(env, "bridged");
  // An address high in the default subnet, which the containers of other tests (given the
  // first free ones) do not take while this one is dumped and not yet restored.
  const std::string wanted = fmt::format("10.88.{}.{}", 200 + ::getpid() % 50, 2 + ::getpid() % 200);
  ASSERT_TRUE(original.run(c_workload("counter"),
                           {"--net", "bridge", "--ip", wanted, "-p", fmt::format("{}:7777", port)}));
  const std::string ip = address_of(env, original.name());
  EXPECT_EQ(ip, wanted);
  ASSERT_FALSE(ip.empty());
  ASSERT_TRUE(echo_through(env, original.name(), ip, 7777, "127.0.0.1", port));

  // Dumped (and gone), then restored: same address, and the published port leads to it again.
  ASSERT_TRUE(original.dump(env.image_dir("bridged"))) << original.last_output();
  ASSERT_TRUE(original.wait_gone());
  Container restored(env, "bridged-restored");
  ASSERT_TRUE(restored.restore(env.image_dir("bridged"), original.status())) << restored.last_output();
  EXPECT_EQ(address_of(env, restored.name()), ip);
  EXPECT_TRUE(echo_through(env, restored.name(), ip, 7777, "127.0.0.1", port));

  // A copy beside the running one: refused at the same address; with --ip it gets the new
  // address, and the published port stays with the one that has it.
  ASSERT_TRUE(restored.dump(env.image_dir("bridged2"), {"--leave-running"})) << restored.last_output();
  // The image holds the status file the running one rewrites all the time.
  std::vector<std::string> args{"restore", "-D", env.image_dir("bridged2").string(), "--name", env.unique_name("same"),
                                "-d"};
  for (const auto& a : accept_rewritten_status(original.status())) args.push_back(a);
  auto refused = env.stasis(args);
  EXPECT_EQ(refused.exit_code, 1) << refused.err;
  EXPECT_NE(refused.err.find("is held by container " + restored.name()), std::string::npos) << refused.err;
  Container copy(env, "bridged-copy");
  const std::string copy_ip = ip.substr(0, ip.rfind('.')) + ".250";  // not one of wanted's
  ASSERT_TRUE(copy.restore(env.image_dir("bridged2"), original.status(), {"--ip", copy_ip})) << copy.last_output();
  EXPECT_NE(copy.last_output().find(fmt::format("host port {}/tcp stays with container {}", port, restored.name())),
            std::string::npos)
      << copy.last_output();
  EXPECT_EQ(address_of(env, copy.name()), copy_ip);
  EXPECT_TRUE(echo_through(env, copy.name(), copy_ip, 7777, copy_ip, 7777));
  EXPECT_TRUE(echo_through(env, restored.name(), ip, 7777, "127.0.0.1", port));

  const std::string link = json_field(env, restored.name(), "host_ifname");
  const std::string copy_link = json_field(env, copy.name(), "host_ifname");
  copy.remove();
  restored.remove();
  original.remove();
  EXPECT_TRUE(nothing_left(link, {port}, ip, restored.name()));
  EXPECT_TRUE(nothing_left(copy_link, {}, copy_ip, copy.name()));
}

// stasis ended without cleaning up (its monitor and the job killed outright): `rm -f` still
// removes the published port, the lease, and the bridge.
TEST(LauncherBridge, RmAfterACrashClearsTheRules) {
  CheckpointEnv env;
  const std::string name = env.unique_name("crash");
  RemoveOnExit guard{env, {name}};
  const int port = host_port(3);
  ASSERT_EQ(env.stasis(sleeper(env, name, {"-p", fmt::format("{}:80", port)})).exit_code, 0);
  const std::string ip = address_of(env, name), link = json_field(env, name, "host_ifname");
  ASSERT_NE(nat_table().find(fmt::format("{} :", port)), std::string::npos) << nat_table();
  CommandResult ps = env.stasis({"ps", "-a", "--json"}, 20s);
  for (const std::string key : {"\"monitor_pid\": ", "\"init_pid\": "}) {
    size_t at = ps.out.find(key);
    ASSERT_NE(at, std::string::npos) << ps.out;
    pid_t pid = std::atoi(ps.out.c_str() + at + key.size());
    ASSERT_GT(pid, 1);
    ::kill(pid, SIGKILL);
  }
  ASSERT_EQ(env.stasis({"rm", "-f", name}).exit_code, 0);
  EXPECT_TRUE(nothing_left(link, {port}, ip, name));
}

TEST(LauncherBridge, PublishedUdpPort) {
  CheckpointEnv env;
  const std::string name = env.unique_name("udp");
  RemoveOnExit guard{env, {name}};
  const int port = host_port(4);
  const std::string echo =
      "import socket\n"
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 9000))\n"
      "while True:\n"
      "    data, peer = s.recvfrom(100); s.sendto(b'udp:' + data, peer)\n";
  ASSERT_EQ(env.stasis({"run", "-d", "--name", name, "--net", "bridge", "-p", fmt::format("{}:9000/udp", port), "--",
                        "python3", "-c", echo})
                .exit_code,
            0);
  const std::string ip = address_of(env, name), link = json_field(env, name, "host_ifname");
  const std::string ask = fmt::format(
      "import socket\n"
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)\n"
      "for i in range(100):\n"
      "    s.sendto(b'ping', ('127.0.0.1', {}))\n"
      "    try:\n"
      "        print(s.recv(100).decode()); break\n"
      "    except socket.timeout:\n"
      "        pass\n",
      port);
  CommandResult r = run_command({"python3", "-c", ask}, 30s);
  EXPECT_EQ(r.out, "udp:ping\n") << r.err << network_report(link);
  ASSERT_EQ(env.stasis({"rm", "-f", name}).exit_code, 0);
  EXPECT_FALSE(fs::exists(kLeases / fmt::format("udp-{}", port)));
  EXPECT_EQ(nat_table().find(fmt::format("udp . {}", port)), std::string::npos);
  EXPECT_TRUE(nothing_left(link, {}, ip, name));
}

// With --rootfs, /etc/hosts and /etc/resolv.conf inside are ours (made in the tree when missing).
TEST(LauncherBridge, RootfsGetsHostsAndResolvConf) {
  CheckpointEnv env;
  TempDir rootfs("stasis-rootfs");
  auto copy_in = [&](const fs::path& file) {
    fs::path dest = rootfs.path() / file.relative_path();
    fs::create_directories(dest.parent_path());
    fs::copy_file(fs::canonical(file), dest, fs::copy_options::overwrite_existing);
    fs::permissions(dest, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
  };
  copy_in("/bin/sh");
  std::istringstream ldd(run_command({"ldd", "/bin/sh"}).out);
  for (std::string w; ldd >> w;)
    if (w[0] == '/') copy_in(w);
  for (const char* d : {"proc", "dev", "tmp"}) fs::create_directories(rootfs.path() / d);
  const std::string name = env.unique_name("rootfs");
  RemoveOnExit guard{env, {name}};
  auto r = env.stasis({"run", "--rm", "--name", name, "--net", "bridge", "--rootfs", rootfs.path().string(), "--",
                       "/bin/sh", "-c",
                       "while read l; do echo \"$l\"; done < /etc/hosts; while read l; do echo \"$l\"; done < "
                       "/etc/resolv.conf"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("127.0.0.1\tlocalhost"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\t" + name + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("# written by stasis"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("nameserver 127."), std::string::npos) << r.out;
  // --rm: its generated files went with it, and its monitor took the bridge down as the last
  // user (it forks the nftables helper after the job's PID namespace is gone).
  EXPECT_FALSE(fs::exists(env.root() / (name + ".hosts")));
  EXPECT_FALSE(fs::exists(env.root() / (name + ".resolv.conf")));
  EXPECT_TRUE(nothing_left("", {}, "", name));
}

TEST(LauncherBridge, BadOptionsAreRefused) {
  CheckpointEnv env;
  auto r = env.stasis({"run", "--net", "veth", "--ip", "10.213.9.2/24", "-p", "8080:80", "--", "true"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("needs --net bridge"), std::string::npos) << r.err;
  r = env.stasis({"run", "--net", "bridge", "-p", "8080", "--", "true"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = env.stasis({"run", "--net", "bridge", "-p", "8080:80/sctp", "--", "true"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = env.stasis({"run", "--net", "bridge", "--subnet", "10.88.0.0/33", "--", "true"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

}  // namespace
}  // namespace stasis::test
