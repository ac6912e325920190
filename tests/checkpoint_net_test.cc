// The contents of a container's network namespace across dump and restore (dump/net.h,
// restore/net.h): links the job made (a veth pair with both ends inside; dummy links where the
// kernel has them), their MTU, MAC and state, IPv4 and IPv6 addresses, routes of the main
// table, and per-namespace sysctls, back here and on a second "host" (a network namespace of
// its own with a state root of its own, as in checkpoint_hosts_test.cc). The test changes the
// namespace from outside with `nsenter --net` and compares `ip` and `sysctl` output before the
// dump and after the restore. Also: a link of a kind restore cannot make refuses the dump with
// the job left running, and a route that cannot be made fails the restore with nothing left.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <regex>
#include <sstream>

#include <fmt/format.h>

#include "launcher/config.h"
#include "launcher/state_store.h"
#include "tests/support/checkpoint_harness.h"
#include "tests/support/second_host.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

// `sh -c script` in the network namespace of pid.
CommandResult in_netns(pid_t pid, const std::string& script) {
  return run_command({"nsenter", "--net=/proc/" + std::to_string(pid) + "/ns/net", "sh", "-c", script}, 30s);
}

// What the job sees of its network namespace, in a form that a faithful restore leaves
// unchanged: links, addresses, routes (sorted), and the sysctls the test changes. Left out:
// the launcher's veth peer on the host side (its index and namespace), and the DAD state of IPv6
// addresses (restore adds them without a second detection).
std::string net_view(pid_t pid, const std::vector<std::string>& sysctls) {
  std::string script = "ip -o link; ip -o addr; ip route; ip -6 route; ip neigh show nud permanent";
  for (const auto& s : sysctls) script += "; echo " + s + "=$(sysctl -n " + s + ")";
  CommandResult r = in_netns(pid, script);
  if (r.exit_code != 0) return "nsenter failed: " + r.err;
  std::string text = std::regex_replace(r.out, std::regex("@if[0-9]+"), "@if");
  text = std::regex_replace(text, std::regex(" (tentative|nodad|dadfailed)"), "");
  text = std::regex_replace(text, std::regex(" link-netns(id)? [^ ]+"), "");  // how `ip` names the host side
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return join(lines);
}

// The job's init (PID 1 of the container) from the harness; -1 if not found.
pid_t init_of(Container& c) { return c.host_pid().value_or(-1); }

const std::vector<std::string> kSysctls{"net.ipv4.tcp_keepalive_time", "net.core.somaxconn",
                                        "net.ipv6.conf.vin0.hop_limit", "net.ipv4.conf.vin1.arp_ignore"};

// The changes a job makes to its namespace; subnet is "10.215.N".
std::string job_changes(const std::string& subnet) {
  return "set -e; ip link add vin0 type veth peer name vin1; ip link set vin0 address 02:00:00:aa:bb:01;"
         "ip link set vin1 mtu 1400; ip link set vin0 up; ip link set vin1 up;"
         "ip addr add " + subnet + ".9/24 dev eth0;"
         "ip addr add 192.168.77.1/24 dev vin0; ip -6 addr add fd00:77::1/64 dev vin0;"
         "ip -6 addr add fd00:78::2/64 dev eth0;"
         "ip route add 10.99.0.0/16 via " + subnet + ".1; ip route add 172.31.5.0/24 via 192.168.77.2 dev vin0;"
         "ip -6 route add fd00:99::/64 dev vin0; ip -6 route add default via fd00:78::1 dev eth0;"
         "ip neigh add 192.168.77.5 lladdr 02:00:00:00:00:05 dev vin0 nud permanent;"
         "ip -6 neigh add fd00:77::5 lladdr 02:00:00:00:00:06 dev vin0 nud permanent;"
         "ip route add blackhole 10.66.0.0/16; ip route add 10.55.0.0/16 via " + subnet + ".1 metric 50 mtu 1300;"
         "sysctl -qw net.ipv4.tcp_keepalive_time=1234 net.core.somaxconn=777 net.ipv6.conf.vin0.hop_limit=33 "
         "net.ipv4.conf.vin1.arp_ignore=2";
}

TEST(CheckpointNet, LinksAddressesRoutesAndSysctlsComeBackHereAndOnASecondHost) {
  CheckpointEnv env;
  const std::string subnet = fmt::format("10.215.{}", ::getpid() % 200 + 20);
  Container original(env, "net");
  ASSERT_TRUE(original.run(c_workload("counter"), {"--net", "veth", "--ip", subnet + ".2/24"}));
  const pid_t pid = init_of(original);
  ASSERT_GT(pid, 0);
  CommandResult r = in_netns(pid, job_changes(subnet));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string before = net_view(pid, kSysctls);
  for (const char* expected : {"vin0@vin1", "mtu 1400", "02:00:00:aa:bb:01", "fd00:77::1/64", "fd00:78::2/64",
                               "10.99.0.0/16 via", "172.31.5.0/24 via 192.168.77.2", "fd00:99::/64 dev vin0",
                               "net.ipv4.tcp_keepalive_time=1234", "net.ipv6.conf.vin0.hop_limit=33",
                               "blackhole 10.66.0.0/16", "192.168.77.5 dev vin0 lladdr 02:00:00:00:00:05 PERMANENT",
                               "fd00:77::5 dev vin0 lladdr 02:00:00:00:00:06 PERMANENT", "metric 50 mtu 1300", "default via fd00:78::1 dev eth0"})
    ASSERT_NE(before.find(expected), std::string::npos) << expected << " missing before the dump:\n" << before;

  const fs::path dir = env.image_dir("net");
  ASSERT_TRUE(original.dump(dir));
  ASSERT_TRUE(original.wait_gone());
  CommandResult show = env.stasis({"show", dir.string()});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("\"type\": \"net\""), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("\"name\": \"ipv4/tcp_keepalive_time\""), std::string::npos) << show.out;

  {
    Container here(env, "net-here");
    ASSERT_TRUE(here.restore(dir, original.status())) << here.last_output();
    const pid_t restored = init_of(here);
    ASSERT_GT(restored, 0);
    EXPECT_EQ(net_view(restored, kSysctls), before);
    EXPECT_TRUE(keep_progressing(here.status(), 1s));
    here.remove();
  }

  SecondHost host2("net");
  ASSERT_TRUE(host2.ready());
  const std::string name = env.unique_name("net-there");
  r = host2.restore(dir, name);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::optional<pid_t> there = host2.init_pid(name);
  ASSERT_TRUE(there);
  EXPECT_EQ(net_view(*there, kSysctls), before);
  clear_status(original.status());
  EXPECT_TRUE(keep_progressing(original.status(), 1s));
}

TEST(CheckpointNet, DummyLinkComesBack) {
  if (run_command({"unshare", "-n", "ip", "link", "add", "d0", "type", "dummy"}).exit_code != 0)
    GTEST_SKIP() << "this kernel cannot make dummy links (CONFIG_DUMMY)";
  CheckpointEnv env;
  Container original(env, "dummy");
  ASSERT_TRUE(original.run(c_workload("counter")));
  const pid_t pid = init_of(original);
  ASSERT_GT(pid, 0);
  CommandResult r = in_netns(pid,
                             "set -e; ip link add dum0 type dummy; ip link set dum0 mtu 9000 up;"
                             "ip addr add 10.77.0.1/24 dev dum0; ip -6 addr add fd00:66::1/64 dev dum0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string before = net_view(pid, {});
  const fs::path dir = env.image_dir("dummy");
  ASSERT_TRUE(original.dump(dir));
  ASSERT_TRUE(original.wait_gone());
  Container restored(env, "dummy-back");
  ASSERT_TRUE(restored.restore(dir, original.status())) << restored.last_output();
  EXPECT_EQ(net_view(init_of(restored), {}), before);
}

TEST(CheckpointNet, UnsupportedLinkRoutingRuleFirewallOrQdiscIsRefusedAndTheJobRunsOn) {
  CheckpointEnv env;
  Container original(env, "odd-link");
  ASSERT_TRUE(original.run(c_workload("counter")));
  const pid_t pid = init_of(original);
  ASSERT_GT(pid, 0);
  struct Case {
    std::string make, said, undo;
  };
  for (const Case& c : {Case{"ip link add br7 type bridge", "link br7 (bridge)", "ip link del br7"},
                        Case{"ip tuntap add tun7 mode tun", "link tun7 (tun)", "ip link del tun7"},
                        Case{"ip link add vx7 type vxlan id 7 dstport 4789", "link vx7 (vxlan)", "ip link del vx7"},
                        Case{"ip rule add from 10.1.2.3 table 100 prio 100", "routing rule 100 (IPv4, table 100)",
                             "ip rule del prio 100"},
                        Case{"ip route add 10.1.0.0/16 dev lo table 100", "is in routing table 100",
                             "ip route flush table 100"},
                        Case{"nft add table inet t7", "firewall tables (nftables t7)", "nft delete table inet t7"},
                        Case{"tc qdisc add dev lo root pfifo", "queueing discipline pfifo on link lo",
                             "tc qdisc del dev lo root"},
                        // Last: a legacy table, once made, stays with the namespace.
                        Case{"iptables-legacy -A INPUT -j ACCEPT", "firewall tables (iptables filter)", "true"}}) {
    CommandResult r = in_netns(pid, c.make);
    ASSERT_EQ(r.exit_code, 0) << c.make << ": " << r.err;
    EXPECT_FALSE(original.dump(env.image_dir("odd-net")));
    EXPECT_NE(original.last_output().find(c.said), std::string::npos) << original.last_output();
    EXPECT_TRUE(process_alive(pid));
    r = in_netns(pid, c.undo);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  clear_status(original.status());
  EXPECT_TRUE(keep_progressing(original.status(), 1s));
}

// A host process with a network namespace of its own (`unshare -n`) gets a new one at restore,
// with its contents, not the restoring host's.
TEST(CheckpointNet, HostProcessWithItsOwnNetworkNamespaceGetsItBack) {
  CheckpointEnv env;
  Workload w = c_workload("counter");
  w.program.insert(w.program.begin(),
                   {"/usr/bin/unshare", "-n", "/bin/sh", "-c",
                    "PATH=/usr/sbin:/usr/bin:/sbin:/bin; ip link set lo up mtu 60000 && ip addr add 127.0.0.7/8 dev lo && "
                    "echo 999 > /proc/sys/net/ipv4/tcp_keepalive_time && exec \"$@\"",
                    "sh"});
  HostProcess host;
  ASSERT_TRUE(host.start(w, env.status_path("own-net")));
  ASSERT_NE(namespace_id(host.pid(), "net"), namespace_id(::getpid(), "net"));
  const std::vector<std::string> sysctls{"net.ipv4.tcp_keepalive_time"};
  const std::string before = net_view(host.pid(), sysctls);
  ASSERT_NE(before.find("127.0.0.7/8"), std::string::npos) << before;
  const fs::path dir = env.image_dir("own-net");
  ASSERT_TRUE(env.dump_pid(host.pid(), dir)) << host.log_tail();
  ASSERT_TRUE(host.wait_exit(20s));
  const std::string host_view = net_view(::getpid(), sysctls);

  Container restored(env, "own-net");
  ASSERT_TRUE(restored.restore(dir, host.status())) << restored.last_output();
  const pid_t init = init_of(restored);
  ASSERT_GT(init, 0);
  EXPECT_NE(namespace_id(init, "net"), namespace_id(::getpid(), "net"));
  EXPECT_EQ(net_view(init, sysctls), before);
  EXPECT_EQ(net_view(::getpid(), sysctls), host_view) << "the restore changed the host's network namespace";
  clear_status(host.status());
  EXPECT_TRUE(keep_progressing(host.status(), 1s));
}

// What the launcher gave the job and the job took away stays away: the launcher makes its
// address and default route again at restore, and restore removes them.
TEST(CheckpointNet, LaunchersAddressAndRouteRemovedByTheJobStayRemoved) {
  CheckpointEnv env;
  const std::string subnet = fmt::format("10.217.{}", ::getpid() % 200 + 20);
  Container original(env, "net-own");
  ASSERT_TRUE(original.run(c_workload("counter"), {"--net", "veth", "--ip", subnet + ".2/24"}));
  const pid_t pid = init_of(original);
  ASSERT_GT(pid, 0);
  CommandResult r = in_netns(pid, "set -e; ip route del default; ip addr del " + subnet + ".2/24 dev eth0; ip addr add " +
                                      subnet + ".7/24 dev eth0; ip route add 10.97.0.0/16 via " + subnet + ".1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string before = net_view(pid, {});
  ASSERT_EQ(before.find("default via"), std::string::npos) << before;
  const fs::path dir = env.image_dir("net-own");
  ASSERT_TRUE(original.dump(dir));
  ASSERT_TRUE(original.wait_gone());
  Container restored(env, "net-own-back");
  ASSERT_TRUE(restored.restore(dir, original.status())) << restored.last_output();
  EXPECT_EQ(net_view(init_of(restored), {}), before);
}

TEST(CheckpointNet, RouteThatCannotBeMadeFailsTheRestoreAndLeavesNothing) {
  CheckpointEnv env;
  const int n = ::getpid() % 100 + 20;
  const std::string subnet = fmt::format("10.216.{}", n), other = fmt::format("10.216.{}", n + 120);
  Container original(env, "net-route");
  ASSERT_TRUE(original.run(c_workload("counter"), {"--net", "veth", "--ip", subnet + ".2/24"}));
  const pid_t pid = init_of(original);
  ASSERT_GT(pid, 0);
  CommandResult r = in_netns(pid, "ip route add 10.98.0.0/16 via " + subnet + ".1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const fs::path dir = env.image_dir("net-route");
  ASSERT_TRUE(original.dump(dir));
  ASSERT_TRUE(original.wait_gone());

  // In another subnet, the job's gateway is out of reach: its route cannot be made.
  const std::string name = env.unique_name("net-route-back");
  r = env.stasis({"restore", "-D", dir.string(), "--name", name, "-d", "--ip", other + ".2/24"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("route 10.98.0.0/16 via " + subnet + ".1 dev eth0"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(env.root() / (name + ".state")));
  const std::string host_link = launcher::host_veth_name(name);
  EXPECT_NE(run_command({"ip", "link", "show", host_link}).exit_code, 0) << host_link << " left behind";
  EXPECT_EQ(env.stasis({"ps", "-a"}).out.find(name), std::string::npos);
}

}  // namespace
}  // namespace stasis::test
