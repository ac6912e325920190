// Checkpoints restored on "another host". A second host is modelled on this machine as a
// network namespace of its own (`ip netns add`) and a state root of its own; `stasis` runs in
// it under `nsenter --net=/run/netns/NAME` (docs/testing.md). Covered: two state roots with a
// container of the same name each, three copies of one job running at once with the same PIDs
// (the original, one on the second host, one here), `ip netns exec` refused with a clear
// message, and a `--net host` job brought back in the restoring host's network namespace.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <set>

#include "launcher/config.h"
#include "launcher/state_store.h"
#include "tests/launcher_test_util.h"
#include "tests/support/checkpoint_harness.h"
#include "tests/support/second_host.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

// The job under a container's PID 1 (our init, under --init and after a restore), or PID 1.
pid_t job_of(pid_t init) {
  std::ifstream in("/proc/" + std::to_string(init) + "/task/" + std::to_string(init) + "/children");
  pid_t child = -1;
  return (in >> child) ? child : init;
}

// Each job's context switches rise (the counter sleeps 10 ms per count) over `duration`: the
// status file alone cannot tell copies that write to the same path apart.
void expect_all_progress(const std::vector<pid_t>& jobs, std::chrono::milliseconds duration) {
  std::vector<long long> before;
  for (pid_t p : jobs) before.push_back(context_switches(p));
  std::this_thread::sleep_for(duration);
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_TRUE(process_alive(jobs[i])) << "job " << jobs[i];
    EXPECT_GT(context_switches(jobs[i]), before[i] + 20) << "job " << jobs[i] << " made no progress";
  }
}

bool cgroup_exists(const std::string& parent, const std::string& name) {
  return fs::exists(fs::path("/sys/fs/cgroup/freezer") / parent / name);
}

// The entry of namespace `kind` in `stasis show`'s JSON, up to its closing brace ("" if none).
std::string namespace_entry(const std::string& show, const std::string& kind) {
  const size_t at = show.find("\"kind\": \"" + kind + "\"");
  return at == std::string::npos ? "" : show.substr(at, show.find('}', at) - at);
}

TEST(CheckpointHosts, TwoStateRootsEachRunDumpAndRestoreTheSameName) {
  CheckpointEnv a, b;
  Container ca(a, "same"), cb(b, "same");
  ASSERT_EQ(ca.name(), cb.name());
  const std::string parent_a = launcher::cgroup_parent_for(a.root());
  const std::string parent_b = launcher::cgroup_parent_for(b.root());
  ASSERT_NE(parent_a, parent_b);
  EXPECT_EQ(launcher::cgroup_parent_for("/run/stasis"), "stasis");
  EXPECT_EQ(launcher::cgroup_parent_for("/run/stasis/"), "stasis");

  ASSERT_TRUE(ca.run(c_workload("counter")));
  ASSERT_TRUE(cb.run(c_workload("counter"))) << "a second root could not run a container of the same name";
  EXPECT_EQ(ca.cgroup_path("freezer").value_or(""), "/sys/fs/cgroup/freezer/" + parent_a + "/" + ca.name());
  EXPECT_EQ(cb.cgroup_path("freezer").value_or(""), "/sys/fs/cgroup/freezer/" + parent_b + "/" + cb.name());

  const fs::path dir_a = a.image_dir("same"), dir_b = b.image_dir("same");
  ASSERT_TRUE(ca.dump(dir_a));
  ASSERT_TRUE(cb.dump(dir_b));
  ASSERT_TRUE(ca.wait_gone());
  ASSERT_TRUE(cb.wait_gone());
  const fs::path status_a = ca.status(), status_b = cb.status();
  ASSERT_TRUE(ca.restore(dir_a, status_a)) << ca.last_output();
  ASSERT_TRUE(cb.restore(dir_b, status_b)) << cb.last_output();
  EXPECT_TRUE(cgroup_exists(parent_a, ca.name()));
  EXPECT_TRUE(cgroup_exists(parent_b, cb.name()));
  std::optional<pid_t> pa = ca.host_pid(), pb = cb.host_pid();
  ASSERT_TRUE(pa && pb);
  EXPECT_NE(namespace_id(*pa, "pid"), namespace_id(*pb, "pid"));
  EXPECT_TRUE(keep_progressing(status_a, 1s));
  EXPECT_TRUE(keep_progressing(status_b, 1s));

  ca.remove();
  cb.remove();
  EXPECT_TRUE(leftover_cgroups(ca.name()).empty());
  EXPECT_FALSE(fs::exists(a.root() / (ca.name() + ".state")));
  EXPECT_FALSE(fs::exists(b.root() / (cb.name() + ".state")));
  // A root's own parent goes with its last container.
  EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup/freezer") / parent_a));
  EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup/freezer") / parent_b));
}

TEST(CheckpointHosts, CgroupParentOptionPlacesTheContainer) {
  CheckpointEnv env;
  const std::string parent = "stasis-test-parent-" + std::to_string(::getpid());
  const std::string name = env.unique_name("cgparent");
  ContainerGuard guard(env.root(), name);
  CommandResult r = run_stasis({"--root", env.root().string(), "--cgroup-parent", "/" + parent + "/", "run", "-d",
                                "--name", name, "--", "sleep", "30"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(cgroup_exists(parent, name));
  r = env.stasis({"rm", "-f", name});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(cgroup_exists(parent, name));
  EXPECT_TRUE(leftover_cgroups(name).empty());

  r = run_stasis({"--root", env.root().string(), "--cgroup-parent", "a/../b", "run", "--name", name, "--", "true"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--cgroup-parent"), std::string::npos) << r.err;
}

TEST(CheckpointHosts, PidsDoNotCollideOnTwoHostsAndHere) {
  CheckpointEnv env;
  SecondHost host2("pids");
  ASSERT_TRUE(host2.ready());
  Container original(env, "pids");
  ASSERT_TRUE(original.run(c_workload("counter"), {"--init"}));
  const fs::path dir = env.image_dir("pids");
  ASSERT_TRUE(original.dump(dir, {"--leave-running"}));

  // On the second host, under the same name; then here once more beside the original.
  CommandResult r = host2.restore(dir, original.name(), accept_rewritten_status(original.status()));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  Container copy(env, "pids-copy");
  ASSERT_TRUE(copy.restore(dir, original.status(), accept_rewritten_status(original.status())))
      << copy.last_output();

  std::optional<pid_t> init_here = original.host_pid(), init_there = host2.init_pid(original.name()),
                       init_copy = copy.host_pid();
  ASSERT_TRUE(init_here && init_there && init_copy);
  const std::vector<pid_t> jobs{job_of(*init_here), job_of(*init_there), job_of(*init_copy)};
  const std::vector<pid_t> inner = namespace_pids(jobs[0]);
  ASSERT_EQ(inner.size(), 2u);
  std::set<std::string> pid_namespaces;
  for (pid_t job : jobs) {
    EXPECT_EQ(namespace_pid(job), inner.back()) << "host pid " << job;
    EXPECT_EQ(namespace_pid(job), 2) << "the job under our init is PID 2 in each copy";
    pid_namespaces.insert(namespace_id(job, "pid"));
  }
  EXPECT_EQ(pid_namespaces.size(), 3u) << "each copy has its own PID namespace";
  // Each copy (loopback only) has a network namespace of its own, on either host.
  EXPECT_NE(namespace_id(*init_there, "net"), namespace_id(::getpid(), "net"));
  EXPECT_NE(namespace_id(*init_there, "net"), host2.net_id());
  expect_all_progress(jobs, 1s);
  WorkloadStatus st = read_status(original.status());
  EXPECT_NE(st.kind, WorkloadStatus::Kind::kFail) << st.raw;

  // The copy alone keeps counting. (By rm: Container::remove would also kill the copies, which
  // share the original's status path on their command lines.)
  r = env.stasis({"rm", "-f", original.name()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = host2.stasis({"rm", "-f", original.name()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  clear_status(copy.status());
  EXPECT_TRUE(keep_progressing(copy.status(), 1s));
}

TEST(CheckpointHosts, IpNetnsExecSaysToUseNsenter) {
  SecondHost host2("exec");
  ASSERT_TRUE(host2.ready());
  const std::string name = "ipnetns-" + std::to_string(::getpid());
  CommandResult r = run_command({"ip", "netns", "exec", host2.netns(), stasis_binary(), "--root",
                                 host2.root().string(), "run", "--name", name, "--", "true"},
                                30s);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("ip netns exec"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nsenter --net=/run/netns/NAME"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(host2.root() / (name + ".state")));
  // The way that works, in the same namespace.
  r = host2.stasis({"run", "--rm", "--name", name, "--", "true"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // A container made that way cannot be frozen from under `ip netns exec` either: said so.
  r = host2.make_container({"run", "-d", "--name", name, "--", "sleep", "30"}, name);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_command({"ip", "netns", "exec", host2.netns(), stasis_binary(), "--root", host2.root().string(), "freeze",
                   name},
                  30s);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("nsenter --net=/run/netns/NAME"), std::string::npos) << r.err;
  EXPECT_NE(host2.stasis({"ps", "-a"}).out.find("running"), std::string::npos);
}

// A container started on the second host gets its links there: loopback in a namespace of its
// own, and the host side of its veth in the second host's namespace, not in this one.
TEST(CheckpointHosts, VethOfAContainerOnTheSecondHostIsOnThatHost) {
  SecondHost host2("veth");
  ASSERT_TRUE(host2.ready());
  const std::string name = "veth-" + std::to_string(::getpid());
  // The same subnet may be in use here: the second host has its own routes.
  CommandResult r = host2.make_container({"run", "-d", "--net", "veth", "--ip", "10.231.7.2/24", "--name", name,
                                            "--", "sleep", "30"},
                                           name);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto state = launcher::StateStore(host2.root()).try_load(name);
  ASSERT_TRUE(state.has_value());
  const std::string link = state->config().net().host_ifname();
  ASSERT_FALSE(link.empty());
  EXPECT_EQ(run_command({"nsenter", "--net=/run/netns/" + host2.netns(), "ip", "link", "show", link}).exit_code, 0)
      << link << " is not on the second host";
  EXPECT_NE(run_command({"ip", "link", "show", link}).exit_code, 0) << link << " is on this host";
  std::optional<pid_t> init = host2.init_pid(name);
  ASSERT_TRUE(init);
  EXPECT_NE(namespace_id(*init, "net"), host2.net_id());
  r = host2.stasis({"rm", "-f", name});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(run_command({"nsenter", "--net=/run/netns/" + host2.netns(), "ip", "link", "show", link}).exit_code, 0)
      << link << " left on the second host";
}

TEST(CheckpointHosts, NetHostIsExternalAndRejoinedOnEachHost) {
  CheckpointEnv env;
  SecondHost host2("nethost");
  ASSERT_TRUE(host2.ready());
  Container original(env, "nethost");
  ASSERT_TRUE(original.run(c_workload("counter"), {"--net", "host"}));
  std::optional<pid_t> pid = original.host_pid();
  ASSERT_TRUE(pid);
  ASSERT_EQ(namespace_id(*pid, "net"), namespace_id(::getpid(), "net"));
  const fs::path dir = env.image_dir("nethost");
  ASSERT_TRUE(original.dump(dir));
  ASSERT_TRUE(original.wait_gone());

  CommandResult show = env.stasis({"show", dir.string()});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  // net is recorded as external and rejoined; the PID namespace is the job's own.
  const std::string net_entry = namespace_entry(show.out, "net");
  ASSERT_FALSE(net_entry.empty()) << show.out;
  EXPECT_NE(net_entry.find("\"external\": true"), std::string::npos) << net_entry;
  EXPECT_NE(net_entry.find("\"rejoin\": true"), std::string::npos) << net_entry;
  const std::string pid_entry = namespace_entry(show.out, "pid");
  ASSERT_FALSE(pid_entry.empty()) << show.out;
  EXPECT_EQ(pid_entry.find("\"external\": true"), std::string::npos) << pid_entry;

  // Here: back in this host's network namespace.
  Container here(env, "nethost-here");
  ASSERT_TRUE(here.restore(dir, original.status())) << here.last_output();
  std::optional<pid_t> restored = here.host_pid();
  ASSERT_TRUE(restored);
  EXPECT_EQ(namespace_id(*restored, "net"), namespace_id(::getpid(), "net"));
  EXPECT_EQ(namespace_id(job_of(*restored), "net"), namespace_id(::getpid(), "net"));
  EXPECT_TRUE(keep_progressing(here.status(), 1s));
  here.remove();

  // On the second host: in that host's network namespace (the copy here rewrote the status).
  CommandResult r = host2.restore(dir, original.name(), accept_rewritten_status(original.status()));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::optional<pid_t> there = host2.init_pid(original.name());
  ASSERT_TRUE(there);
  EXPECT_EQ(namespace_id(*there, "net"), host2.net_id());
  EXPECT_EQ(namespace_id(job_of(*there), "net"), host2.net_id());
  clear_status(original.status());
  EXPECT_TRUE(keep_progressing(original.status(), 1s));
}

TEST(CheckpointHosts, HostProcessNamespacesAreExternalAndItsNetIsRejoinedOnTheSecondHost) {
  CheckpointEnv env;
  SecondHost host2("hostpid");
  ASSERT_TRUE(host2.ready());
  HostProcess host;
  ASSERT_TRUE(host.start(c_workload("counter"), env.status_path("host")));
  const fs::path dir = env.image_dir("host");
  ASSERT_TRUE(env.dump_pid(host.pid(), dir)) << host.log_tail();
  ASSERT_TRUE(host.wait_exit(20s));

  CommandResult show = env.stasis({"show", dir.string()});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  // It shared every namespace of the host; all but the PID one are rejoined at restore.
  for (const char* kind : {"pid", "mnt", "net", "uts", "ipc"}) {
    const std::string entry = namespace_entry(show.out, kind);
    EXPECT_NE(entry.find("\"external\": true"), std::string::npos) << kind << ": " << entry;
    EXPECT_EQ(entry.find("\"rejoin\": true") != std::string::npos, std::string(kind) != "pid")
        << kind << ": " << entry;
  }

  const std::string name = env.unique_name("from-host");
  CommandResult r = host2.restore(dir, name);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::optional<pid_t> init = host2.init_pid(name);
  ASSERT_TRUE(init);
  EXPECT_EQ(namespace_id(job_of(*init), "net"), host2.net_id());
  EXPECT_NE(namespace_id(job_of(*init), "pid"), namespace_id(::getpid(), "pid"));
  // The second host is modelled by its network namespace alone: its mounts, names and IPC are ours.
  for (const char* kind : {"mnt", "uts", "ipc"})
    EXPECT_EQ(namespace_id(job_of(*init), kind), namespace_id(::getpid(), kind)) << kind;
  clear_status(host.status());
  EXPECT_TRUE(keep_progressing(host.status(), 1s));
}

}  // namespace
}  // namespace stasis::test
