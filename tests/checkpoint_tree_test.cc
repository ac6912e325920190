// Process trees: a container or a host process whose job is several processes dumps and
// restores with every process at its PID, parent, threads, process group and session, and
// the pipes between them shared, with the data that was in flight. What restore cannot bring
// back yet is refused at dump, naming the pid, with the job left running.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/proc.h"
#include "launcher/config.h"
#include "tests/support/checkpoint_harness.h"
#include "tests/support/second_host.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

// A process as seen inside its PID namespace.
struct Shape {
  pid_t ppid = 0;  // 0: the root of the walk
  pid_t pgid = 0;  // 0: outside the namespace
  pid_t sid = 0;
  int threads = 0;
  std::string comm;
  bool operator==(const Shape& o) const {
    return ppid == o.ppid && pgid == o.pgid && sid == o.sid && threads == o.threads && comm == o.comm;
  }
};

std::string describe(const std::map<pid_t, Shape>& tree) {
  std::string out;
  for (const auto& [pid, s] : tree)
    out += fmt::format("\n  pid {} ppid {} pgid {} sid {} threads {} {}", pid, s.ppid, s.pgid, s.sid, s.threads, s.comm);
  return out;
}

// The host process `root` and all its descendants, by namespace pid.
std::map<pid_t, Shape> tree_shape(pid_t root) {
  std::map<pid_t, Shape> out;
  std::vector<std::pair<pid_t, pid_t>> walk{{root, 0}};  // (host pid, namespace pid of its parent)
  while (!walk.empty()) {
    auto [host, parent] = walk.back();
    walk.pop_back();
    proc::Status st;
    try {
      st = proc::read_status(host);
    } catch (const std::exception&) {
      continue;
    }
    if (st.ns_pid.empty()) continue;
    Shape s;
    s.ppid = parent;
    s.pgid = st.ns_pgid.empty() ? 0 : st.ns_pgid.back();
    s.sid = st.ns_sid.empty() ? 0 : st.ns_sid.back();
    s.threads = st.threads;
    s.comm = st.name;
    out[st.ns_pid.back()] = s;
    for (pid_t tid : proc::list_tasks(host))
      for (pid_t child : proc::list_children(host, tid)) walk.emplace_back(child, st.ns_pid.back());
  }
  return out;
}

// The tree_pipeline workload: parent, producer | filter | consumer, and a daemon in a
// session of its own; its children check their ids and the pipe data themselves.
Workload pipeline() {
  Workload w = c_workload("tree_pipeline");
  w.watch = 2000ms;
  return w;
}

using Tree = std::map<pid_t, Shape>;

// What a round trip checks of the tree: the original's shape is taken before the dump
// (`before`, checked by `check_before`), and the restored tree must be the same process by
// process (both through `lasting`, which may leave out processes that come and go); then
// `after`, if any, with the restored container's PID 1.
struct TreeCheck {
  std::function<void(const Tree&)> check_before;
  std::function<Tree(Tree)> lasting = [](Tree t) { return t; };
  std::function<void(Container&, pid_t)> after;
};

void set_tree_checks(RoundTrip& how, Tree& before, const TreeCheck& check) {
  how.before_dump = [&before, check](Container& original) {
    auto pid = original.host_pid();
    ASSERT_TRUE(pid.has_value());
    before = tree_shape(*pid);
    if (check.check_before) {
      ASSERT_NO_FATAL_FAILURE(check.check_before(before));
    }
  };
  how.after_restore = [&before, check](Container& restored) {
    auto pid = restored.host_pid();
    ASSERT_TRUE(pid.has_value());
    const Tree after = tree_shape(*pid);
    EXPECT_EQ(check.lasting(after), check.lasting(before))
        << "before the dump:" << describe(before) << "\nafter the restore:" << describe(after);
    if (check.after) check.after(restored, *pid);
  };
}

// The tree must have `size` processes before the dump.
TreeCheck processes(size_t size) {
  TreeCheck check;
  check.check_before = [size](const Tree& t) { ASSERT_EQ(t.size(), size) << describe(t); };
  return check;
}

// Dumps and restores w, whose tree has `size` processes before the dump; the restored tree
// must be the same, process by process.
void check_same_tree(const Workload& w, size_t size) {
  Tree before;
  RoundTrip how;
  set_tree_checks(how, before, processes(size));
  ASSERT_NO_FATAL_FAILURE(check_round_trip(w, how));
}

// Dumps and restores w in a container; the restored tree must be the original's, process by
// process.
void check_tree_round_trip(const Workload& w, std::vector<std::string> run_options, bool leave_running = false) {
  Tree before;
  RoundTrip how;
  how.run_options = std::move(run_options);
  how.leave_running = leave_running;
  TreeCheck check;
  check.check_before = [](const Tree& t) { ASSERT_GE(t.size(), 5u) << describe(t); };
  set_tree_checks(how, before, check);
  ASSERT_NO_FATAL_FAILURE(check_round_trip(w, how));
}

TEST(CheckpointTree, PipelineWithDataInFlight) { check_tree_round_trip(pipeline(), {}); }

TEST(CheckpointTree, PipelineUnderInit) { check_tree_round_trip(pipeline(), {"--init"}); }

// The original keeps running beside its copy: same PIDs, each in its own namespace.
TEST(CheckpointTree, PipelineLeftRunningAndRestoredBeside) { check_tree_round_trip(pipeline(), {}, true); }

// `sh -c 'while :; do date; sleep 1; done'`, the first container a user tries: a shell and
// its children (date, sleep), with and without our init.
Workload shell_loop() {
  Workload w;
  w.name = "shell-loop";
  // $0 is the status path; the counter lives in the shell.
  w.program = {"/bin/sh", "-c",
               "i=0; while :; do i=$((i+1)); date >/dev/null; echo \"ok $i\" >\"$0.tmp\" && mv \"$0.tmp\" \"$0\"; "
               "sleep 0.2; done"};
  w.watch = 2000ms;
  return w;
}

TEST(CheckpointTree, ShellLoop) { ASSERT_NO_FATAL_FAILURE(check_round_trip(shell_loop())); }

TEST(CheckpointTree, ShellLoopUnderInit) {
  RoundTrip how;
  how.run_options = {"--init"};
  ASSERT_NO_FATAL_FAILURE(check_round_trip(shell_loop(), how));
}

// `stasis dump --pid` of a host process dumps its whole subtree; restore puts it under our
// init with its PIDs, groups and sessions.
TEST(CheckpointTree, HostSubtreeByPid) {
  CheckpointEnv env;
  HostProcess host;
  ASSERT_TRUE(host.start(pipeline(), env.status_path("host")));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(host.status(), 0, 10s, &n));
  auto before = tree_shape(host.pid());
  ASSERT_EQ(before.size(), 5u) << describe(before);
  fs::path images = env.image_dir("host");
  ASSERT_TRUE(env.dump_pid(host.pid(), images)) << host.log_tail();
  ASSERT_TRUE(host.wait_exit(20s)) << "dump --pid without --leave-running must stop the process";
  for (const auto& [pid, s] : before) EXPECT_FALSE(process_alive(pid)) << "pid " << pid << " survived the dump";
  n = std::max(n, read_status(host.status()).progress);
  clear_status(host.status());

  Container restored(env, "subtree");
  ASSERT_TRUE(restored.restore(images, host.status())) << restored.last_output();
  ASSERT_TRUE(wait_for_progress(restored.status(), n, 30s, &n, n));
  ASSERT_TRUE(keep_progressing(restored.status(), 2000ms));
  auto init = restored.host_pid();
  ASSERT_TRUE(init.has_value());
  auto after = tree_shape(*init);
  ASSERT_EQ(after.size(), before.size() + 1) << describe(after);  // and our init, PID 1
  EXPECT_EQ(after[1].comm, "stasis-init");
  for (auto& [pid, s] : before) {
    if (s.ppid == 0) s.ppid = 1;  // the root's parent is our init now
    EXPECT_EQ(after[pid], s) << "pid " << pid << ": before" << describe(before) << "\nafter" << describe(after);
  }
}

// A POSIX lock held by a child, a flock on an open file a parent and its child share.
TEST(CheckpointTree, FileLocksStayWithTheirHolders) {
  ASSERT_NO_FATAL_FAILURE(check_round_trip(c_workload("tree_locks")));
}

// System V segments attached by several processes (one removed while attached) stay one
// segment each.
TEST(CheckpointTree, SysVSegmentsStayShared) {
  ASSERT_NO_FATAL_FAILURE(check_round_trip(c_workload("tree_sysv")));
}

// Each process comes back in its own working directory, a deleted one (a ghost) included.
TEST(CheckpointTree, EachProcessKeepsItsWorkingDirectory) {
  ASSERT_NO_FATAL_FAILURE(check_round_trip(c_workload("tree_cwd")));
}

// Real programs. A bash loop with children: a background job, a pipeline in a command
// substitution, external commands.
TEST(CheckpointTree, BashLoopWithChildren) {
  Workload w;
  w.name = "tree-bash";
  w.program = {"/bin/bash", std::string(STASIS_SOURCE_DIR) + "/tests/workloads/tree_bash.sh"};
  w.watch = 2000ms;
  ASSERT_NO_FATAL_FAILURE(check_round_trip(w));
}

// `make -j2` of a generated project, checkpointed mid-build (make, its shells, cc and cc1 in
// flight), restored, and finishing with a program that prints the right sum.
TEST(CheckpointTree, MakeMidBuild) {
  if (!fs::exists("/usr/bin/make") || !fs::exists("/usr/bin/cc")) GTEST_SKIP() << "make or cc is missing";
  CheckpointEnv env;
  const fs::path project = env.work() / "project";
  fs::create_directories(project);
  const int files = 80;
  long expected = 0;
  std::string objects = "main.o";
  std::string declarations, calls;
  for (int i = 1; i <= files; ++i) {
    std::ofstream(project / fmt::format("f{}.c", i))
        << "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
        << fmt::format("int f{}(int x) {{ int s = 0; for (int i = 0; i < x; ++i) s += i * {} % 7; return s; }}\n", i, i);
    int s = 0;
    for (int k = 0; k < 100; ++k) s += k * i % 7;
    expected += s;
    objects += fmt::format(" f{}.o", i);
    declarations += fmt::format("int f{}(int);\n", i);
    calls += fmt::format("  t += f{}(100);\n", i);
  }
  std::ofstream(project / "main.c") << "#include <stdio.h>\n"
                                     << declarations << "int main(void) {\n  long t = 0;\n"
                                     << calls << "  printf(\"%ld\\n\", t);\n  return 0;\n}\n";
  std::ofstream(project / "Makefile") << "OBJS = " << objects << "\nprog: $(OBJS)\n\tcc -o $@ $(OBJS)\n"
                                      << "%.o: %.c\n\tcc -O2 -c -o $@ $<\n";
  const fs::path result = project / "result";
  Workload w;
  w.name = "make";
  w.program = {"/bin/sh", "-c",
               fmt::format("make -j2 -C {} >{}/log 2>&1; echo \"done $?\" >{}", project.string(), project.string(),
                           result.string())};
  Container original(env, "make");
  // No status file: started by hand, dumped once a few objects are built.
  CommandResult r = env.stasis({"run", "-d", "--name", original.name(), "--", w.program[0], w.program[1], w.program[2]});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto objects_built = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(project)) n += e.path().extension() == ".o";
    return n;
  };
  ASSERT_TRUE(wait_until([&] { return objects_built() >= 5; }, 60s)) << "the build did not start";
  ASSERT_FALSE(fs::exists(result)) << "the build ended before the dump: make the project bigger";
  const fs::path images = env.image_dir("make");
  ASSERT_TRUE(original.dump(images)) << original.last_output();
  const int at_dump = objects_built();
  Container restored(env, "make-restored");
  ASSERT_TRUE(restored.restore(images, env.status_path("make"))) << restored.last_output();
  ASSERT_TRUE(wait_until([&] { return fs::exists(result) && fs::file_size(result) > 0; }, 120s))
      << "the restored build did not finish";
  std::ifstream in(result);
  std::string word;
  int code = -1;
  in >> word >> code;
  EXPECT_EQ(code, 0) << "make failed after the restore";
  EXPECT_GT(objects_built(), at_dump);
  CommandResult run = run_command({(project / "prog").string()}, 10s);
  EXPECT_EQ(run.out, fmt::format("{}\n", expected)) << run.err;
}

// A restore of a tree that fails half way (a fault in one worker, after some processes are
// whole) leaves no process, cgroup or state behind, and says why.
TEST(CheckpointTree, FailedRestoreLeavesNothingBehind) {
  CheckpointEnv env;
  Container original(env, "pipeline");
  ASSERT_TRUE(original.run(pipeline()));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 20s, &n));
  const fs::path images = env.image_dir("pipeline");
  ASSERT_TRUE(original.dump(images));
  ASSERT_TRUE(original.wait_gone());
  for (const char* fault : {"restore-after-memory", "restore-before-finish"}) {
    SCOPED_TRACE(fault);
    const std::string name = env.unique_name("failed");
    CommandResult r = run_command({"env", std::string("STASIS_FAULT=") + fault, stasis_binary(), "--root",
                                   env.root().string(), "restore", "-D", images.string(), "--name", name, "-d"},
                                  60s);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find("injected fault"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(env.root() / (name + ".state"))) << "state file left";
    for (const char* controller : {"freezer", "memory", "pids"})
      EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup") / controller / launcher::cgroup_parent_for(env.root()) / name))
          << controller << " cgroup left";
    // No process of the tree is left: each would hold the workload's status path in argv.
    EXPECT_TRUE(wait_until(
        [&] {
          CommandResult p = run_command({"pgrep", "-f", original.status().string()}, 5s);
          return p.out.empty();
        },
        5s))
        << "processes of the failed restore are left";
  }
}

// What is not restored yet is refused at dump, naming the pid, and the job runs on.
void expect_refused(const Workload& w, const std::vector<std::string>& run_options, const std::string& expected) {
  CheckpointEnv env;
  Container c(env, "refused-" + w.name);
  ASSERT_TRUE(c.run(w, run_options));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(c.status(), 0, 10s, &n));
  ASSERT_TRUE(wait_for_progress(c.status(), n, 10s, &n));
  fs::path images = env.image_dir("refused");
  EXPECT_FALSE(c.dump(images)) << "the dump of " << w.name << " must be refused";
  EXPECT_NE(c.last_output().find(expected), std::string::npos) << c.last_output();
  EXPECT_FALSE(fs::exists(images / "inventory.img"));
  ASSERT_TRUE(wait_for_progress(c.status(), n, 10s, &n)) << "the job must run on after a refused dump";
}

// Zombies come back as zombies with their exit status, which the parent reaps after the
// restore (the workload checks both statuses with and without reaping).
// Zombies come back with their status, one of them in its live sibling's process group.
TEST(CheckpointTree, ZombiesComeBackForTheirParentToReap) {
  Tree before;
  RoundTrip how;
  TreeCheck check = processes(5);
  check.after = [](Container& restored, pid_t pid) {
    std::ofstream(restored.status().string() + ".reap") << "now\n";
    std::uint64_t n = 0;
    ASSERT_TRUE(wait_for_progress(restored.status(), 0, 10s, &n));
    ASSERT_TRUE(wait_for_progress(restored.status(), n + 20, 10s, &n));
    std::ifstream reaped(restored.status().string() + ".reaped");
    std::string word;
    reaped >> word;
    EXPECT_EQ(word, "reaped");
    EXPECT_EQ(tree_shape(pid).size(), 2u) << "the zombies are reaped";
  };
  set_tree_checks(how, before, check);
  ASSERT_NO_FATAL_FAILURE(check_round_trip(c_workload("tree_zombie"), how));
}

// Children stopped by job control (SIGSTOP, SIGTSTP) come back stopped and run nothing until
// their parent sends SIGCONT, after which they count on; with --leave-running the original's
// stay stopped too (the workload checks that no stopped child runs).
void check_stopped_children(bool leave_running) {
  const auto stopped_children = [](pid_t root) {
    std::vector<pid_t> out;
    for (pid_t tid : proc::list_tasks(root))
      for (pid_t child : proc::list_children(root, tid))
        if (proc::read_stat(child).state == 'T') out.push_back(child);
    return out;
  };
  RoundTrip how;
  how.leave_running = leave_running;
  how.before_dump = [&](Container& original) {
    auto pid = original.host_pid();
    ASSERT_TRUE(pid.has_value());
    ASSERT_EQ(stopped_children(*pid).size(), 2u);
  };
  how.after_restore = [&](Container& restored) {
    auto pid = restored.host_pid();
    ASSERT_TRUE(pid.has_value());
    EXPECT_EQ(stopped_children(*pid).size(), 2u) << "both children must come back stopped";
    std::ofstream(restored.status().string() + ".cont") << "now\n";
    std::uint64_t n = 0;
    ASSERT_TRUE(wait_for_progress(restored.status(), 0, 10s, &n));
    ASSERT_TRUE(wait_for_progress(restored.status(), n + 5, 10s, &n));
    std::ifstream continued(restored.status().string() + ".continued");
    std::string word;
    continued >> word;
    EXPECT_EQ(word, "continued") << "the children did not count on after SIGCONT";
    EXPECT_TRUE(stopped_children(*pid).empty());
  };
  ASSERT_NO_FATAL_FAILURE(check_round_trip(c_workload("tree_stopped"), how));
}

TEST(CheckpointTree, StoppedChildrenStayStopped) { check_stopped_children(false); }

TEST(CheckpointTree, StoppedChildrenOfAJobLeftRunningStayStopped) { check_stopped_children(true); }

// Dumped here, restored on the second "host" (a network namespace and a state root of its
// own, docs/testing.md): the same tree with the same ids, and the workload's own checks of
// its pipes, memory and children go on there.
void check_tree_on_second_host(const Workload& w) {
  CheckpointEnv env;
  SecondHost host2("tree");
  ASSERT_TRUE(host2.ready());
  Container original(env, w.name);
  ASSERT_TRUE(original.run(w));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 10s, &n));
  auto pid = original.host_pid();
  ASSERT_TRUE(pid.has_value());
  const auto before = tree_shape(*pid);
  ASSERT_GE(before.size(), 2u) << describe(before);
  const fs::path dir = env.image_dir("tree");
  ASSERT_TRUE(original.dump(dir)) << original.last_output();
  ASSERT_TRUE(original.wait_gone());
  const WorkloadStatus last = read_status(original.status());
  ASSERT_NE(last.kind, WorkloadStatus::Kind::kFail) << last.reason;
  n = std::max(n, last.progress);
  clear_status(original.status());

  CommandResult r = host2.restore(dir, original.name(), accept_rewritten_status(original.status()));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto there = host2.init_pid(original.name());
  ASSERT_TRUE(there.has_value());
  const auto after = tree_shape(*there);
  EXPECT_EQ(after, before) << "before the dump:" << describe(before) << "\non the second host:" << describe(after);
  ASSERT_TRUE(wait_for_progress(original.status(), n, 30s, &n, n)) << "on the second host";
  ASSERT_TRUE(keep_progressing(original.status(), w.watch)) << "on the second host";
}

TEST(CheckpointTree, PipelineOnTheSecondHost) { check_tree_on_second_host(pipeline()); }
TEST(CheckpointTree, ShellLoopOnTheSecondHost) { check_tree_on_second_host(shell_loop()); }
TEST(CheckpointTree, ZombiesOnTheSecondHost) { check_tree_on_second_host(c_workload("tree_zombie")); }
TEST(CheckpointTree, SysVSegmentsOnTheSecondHost) { check_tree_on_second_host(c_workload("tree_sysv")); }
TEST(CheckpointTree, SharedMemoryOnTheSecondHost) { check_tree_on_second_host(c_workload("tree_shared_mem")); }
TEST(CheckpointTree, StoppedChildrenOnTheSecondHost) { check_tree_on_second_host(c_workload("tree_stopped")); }
TEST(CheckpointTree, SharedEpollOnTheSecondHost) { check_tree_on_second_host(c_workload("tree_epoll")); }
TEST(CheckpointTree, SubreaperOnTheSecondHost) { check_tree_on_second_host(c_workload("tree_subreaper")); }
TEST(CheckpointTree, PreForkServerOnTheSecondHost) { check_tree_on_second_host(c_workload("tree_prefork")); }

// bash with job control (`set -m`): a background pipeline whose first command has exited is
// a process group without its leader, its last command a child of bash. It comes back in
// that group, and bash still knows it as a job (`jobs -p`, checked by the script each round).
TEST(CheckpointTree, BashJobWhoseLeaderExitedComesBack) {
  Workload w;
  w.name = "tree-bash-job";
  // $0 is the status path.
  w.program = {"/bin/bash", "-c",
               "set -m; sleep 0.1 | sleep 1000 & sleep 0.5; i=0; while :; do i=$((i+1)); "
               "if [ -z \"$(jobs -p)\" ]; then echo 'FAIL the job is gone' >\"$0.tmp\"; "
               "else echo \"ok $i\" >\"$0.tmp\"; fi; mv \"$0.tmp\" \"$0\"; sleep 0.1; done"};
  w.watch = 1500ms;
  Tree before;
  RoundTrip how;
  TreeCheck check;
  check.check_before = [](const Tree& t) {
    bool leaderless = false;
    for (const auto& [p, shape] : t) leaderless |= shape.pgid != 0 && !t.count(shape.pgid);
    ASSERT_TRUE(leaderless) << "no process group without its leader:" << describe(t);
  };
  // The loop's own commands come and go, each a group of its own, and so do the subshells of
  // its `$(jobs -p)`, bash in bash's group: compare the others.
  check.lasting = [](Tree t) {
    std::erase_if(t, [](const auto& e) {
      return (e.second.comm != "bash" && e.second.pgid == e.first) || (e.second.comm == "bash" && e.first != 1);
    });
    return t;
  };
  set_tree_checks(how, before, check);
  ASSERT_NO_FATAL_FAILURE(check_round_trip(w, how));
}

// A process group whose leader has exited, its members adopted by the job's PID 1: a stand-in
// child of PID 1 takes the leader's pid and makes the group again for them, then goes.
TEST(CheckpointTree, GroupWhoseLeaderExitedComesBack) {
  ASSERT_NO_FATAL_FAILURE(check_same_tree(c_workload("tree_orphan_group"), 3));
}

// Under --init the members' parent is our reaper, which is not in the dump: no process of the
// job can host the stand-in, and the dump says so.
TEST(CheckpointTree, GroupWithoutLeaderUnderInitIsRefused) {
  expect_refused(c_workload("tree_orphan_group"), {"--init"}, "whose leader has exited");
}

// A daemon made by the double fork: an orphan of PID 1 whose session leader has exited. A
// stand-in for the leader makes the session again and leaves; the daemon checks its ids.
TEST(CheckpointTree, DaemonWhoseSessionLeaderExited) {
  ASSERT_NO_FATAL_FAILURE(check_same_tree(c_workload("tree_daemon"), 2));
}
// A session whose leader has exited, its member adopted by a subreaper that is not PID 1 (a
// supervisor's shape): a stand-in child of the subreaper takes the leader's pid, makes the
// session again and creates the member, which the subreaper adopts when the stand-in goes.
TEST(CheckpointTree, SessionMemberAdoptedByASubreaper) {
  ASSERT_NO_FATAL_FAILURE(check_same_tree(c_workload("tree_subreaper"), 3));
}

// A pre-fork server: a parent and two workers sharing a listening socket, a MAP_SHARED
// counter page and a named FIFO the workers write numbered lines into and the parent reads
// slowly (lines wait in it at the dump): every line arrives once and in order, and the
// workers go on accepting the parent's connections.
TEST(CheckpointTree, PreForkServerWithANamedFifo) {
  ASSERT_NO_FATAL_FAILURE(check_same_tree(c_workload("tree_prefork"), 3));
}

// The same with the FIFO's name removed once every process has it open: restore makes a FIFO
// at that name, opens it and removes it again.
TEST(CheckpointTree, PreForkServerWithARemovedFifo) {
  Tree before;
  RoundTrip how;
  TreeCheck check = processes(3);
  check.after = [](Container& restored, pid_t) {
    EXPECT_FALSE(fs::exists(restored.status().string() + ".fifo")) << "the FIFO made again kept a name";
  };
  set_tree_checks(how, before, check);
  ASSERT_NO_FATAL_FAILURE(check_round_trip(c_workload("tree_prefork", {"removed"}), how));
}

// Memory shared between processes (and between two mappings of one process) stays shared:
// the workload's progress is what its child counts, read through that memory.
TEST(CheckpointTree, SharedMemoryStaysShared) {
  ASSERT_NO_FATAL_FAILURE(check_round_trip(c_workload("tree_shared_mem")));
}

// A memfd mapped by two processes and open in both too (one description they share, at an
// offset, and one of the child's own): the fds and the mappings come back as one memfd.
TEST(CheckpointTree, MemfdMappedAndOpenInTwoProcessesStaysOne) {
  ASSERT_NO_FATAL_FAILURE(check_round_trip(c_workload("tree_shared_mem", {"fd"})));
}

// One epoll shared by a parent and its child, each having added files the other never had:
// every item comes back, added by a process that holds its file, under the number it was
// added with (the child modifies its item by that number each iteration), and each process
// goes on seeing its events through the shared epoll.
TEST(CheckpointTree, EpollSharedByParentAndChild) {
  ASSERT_NO_FATAL_FAILURE(check_round_trip(c_workload("tree_epoll")));
}

// A /dev/shm file mapped shared by a parent and its child and unlinked at once stays one
// object after restore.
TEST(CheckpointTree, DeletedShmFileStaysShared) {
  ASSERT_NO_FATAL_FAILURE(check_round_trip(c_workload("tree_shm_deleted")));
}

// python3's multiprocessing.Pool(2): its semaphores are /dev/shm files mapped shared by the
// three processes and unlinked at once. They come back shared, and the pool goes on with the
// right results.
TEST(CheckpointTree, PythonMultiprocessingPool) {
  Workload w;
  w.name = "py_mp_pool";
  w.program = {"/usr/bin/python3", std::string(STASIS_SOURCE_DIR) + "/tests/workloads/py_mp_pool.py"};
  w.start_timeout = 30s;
  w.watch = 2000ms;
  // The semaphores mapped by each process, by namespace pid: address -> inode.
  using Semaphores = std::map<pid_t, std::map<uint64_t, uint64_t>>;
  auto semaphores = [](Container& c, std::string_view prefix) {
    Semaphores out;
    auto root = c.host_pid();
    if (!root) return out;
    std::vector<pid_t> walk{*root};
    while (!walk.empty()) {
      pid_t host = walk.back();
      walk.pop_back();
      try {
        const pid_t ns_pid = proc::read_status(host).ns_pid.back();
        for (const auto& m : proc::read_maps(host))
          if (m.shared && m.deleted && m.path.rfind(prefix, 0) == 0) out[ns_pid][m.start] = m.inode;
        for (pid_t tid : proc::list_tasks(host))
          for (pid_t child : proc::list_children(host, tid)) walk.push_back(child);
      } catch (const std::exception&) {
      }
    }
    return out;
  };
  Semaphores before;
  RoundTrip how;
  how.before_dump = [&](Container& original) {
    before = semaphores(original, "/dev/shm/sem.");
    ASSERT_GE(before.size(), 3u) << "the pool and its two workers map its semaphores";
  };
  how.after_restore = [&](Container& restored) {
    const Semaphores after = semaphores(restored, "/memfd:sem.");
    ASSERT_EQ(after.size(), before.size());
    std::map<uint64_t, uint64_t> inode_at;  // one object per address, in every process
    for (const auto& [pid, maps] : after) {
      ASSERT_TRUE(before.count(pid)) << "pid " << pid;
      ASSERT_EQ(maps.size(), before.at(pid).size()) << "pid " << pid;
      for (const auto& [start, inode] : maps) {
        EXPECT_TRUE(before.at(pid).count(start)) << fmt::format("pid {} at {:#x}", pid, start);
        auto [it, added] = inode_at.emplace(start, inode);
        EXPECT_EQ(it->second, inode) << fmt::format("pid {} at {:#x}: not the others' object", pid, start);
      }
    }
  };
  ASSERT_NO_FATAL_FAILURE(check_round_trip(w, how));
}

}  // namespace
}  // namespace stasis::test
