// Unix sockets: socketpairs with data in flight both ways, shutdown state and options
// (unix_pairs); names, listeners with their backlog and pending connections, accepted and
// datagram connections (unix_names); and what the dump refuses (unix_refused).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

// Stream, datagram and seqpacket pairs: every queue comes back byte for byte and record by
// record; shut-down directions, O_NONBLOCK, FD_CLOEXEC, SO_PASSCRED, buffer sizes, timeouts.
TEST(CheckpointUnixSockets, PairsComeBackWithTheirQueues) { check_round_trip(c_workload("unix_pairs")); }

// --leave-running reads the queues in place: the original goes on without missing a byte.
TEST(CheckpointUnixSockets, PairsLeaveRunning) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(c_workload("unix_pairs"), how);
}

// Dumped three times while it runs, each image restored in turn.
TEST(CheckpointUnixSockets, PairsRepeatedDumps) { check_repeated_dumps(c_workload("unix_pairs"), 3); }

// A host process (dump --pid): its sockets are found in the host's network namespace, and
// its names (abstract ones live there) come back in the namespace the restore rejoins.
TEST(CheckpointUnixSockets, HostProcessWithNamesDumpedByPid) {
  CheckpointEnv env;
  HostProcess host;
  ASSERT_TRUE(host.start(c_workload("unix_names"), env.status_path("host")));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(host.status(), 0, 10s, &n));
  fs::path images = env.image_dir("host");
  ASSERT_TRUE(env.dump_pid(host.pid(), images)) << host.log_tail();
  ASSERT_TRUE(host.wait_exit(20s)) << "dump --pid without --leave-running must stop the process";
  n = std::max(n, read_status(host.status()).progress);
  clear_status(host.status());
  Container restored(env, "unix-host");
  ASSERT_TRUE(restored.restore(images, host.status())) << restored.last_output();
  ASSERT_TRUE(wait_for_progress(restored.status(), n, 30s, &n, n));
  std::ofstream(host.status().string() + ".accept") << "go\n";
  std::string result;
  EXPECT_TRUE(wait_until(
      [&] {
        std::ifstream in(host.status().string() + ".accepted");
        return std::getline(in, result) && !result.empty();
      },
      10s));
  EXPECT_EQ(result, "ok");
  EXPECT_TRUE(keep_progressing(restored.status(), 500ms));
}

// A listener bound to a path: the copy restored while the original still listens there is
// refused by name (and leaves nothing behind); once the original is gone, its stale socket file
// is replaced by the restored listener's, with its mode.
TEST(CheckpointUnixSockets, PathTakenByTheOriginalThenFree) {
  CheckpointEnv env;
  Container original(env, "unix-listener");
  ASSERT_TRUE(original.run(c_workload("unix_listener")));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 10s, &n));
  fs::path images = env.image_dir("listener");
  const std::uint64_t before_dump = n;  // the image's progress is at least this
  ASSERT_TRUE(original.dump(images, {"--leave-running"}));
  {
    Container copy(env, "unix-listener-copy");
    auto r = copy.restore(images, original.status());
    ASSERT_FALSE(r) << "the restore took the name the original listens on";
    EXPECT_NE(std::string(r.message()).find(fmt::format("another socket is bound to {}.sock (the original",
                                                        original.status().string())),
              std::string::npos)
        << r.message();
    EXPECT_FALSE(copy.host_pid().has_value()) << "a failed restore must leave nothing running";
  }
  ASSERT_TRUE(wait_for_progress(original.status(), n, 10s, &n, n)) << "the original lost its listener";
  original.remove();
  ASSERT_TRUE(original.wait_gone());
  struct stat st {};
  ASSERT_EQ(::stat((original.status().string() + ".sock").c_str(), &st), 0) << "the stale socket file is gone";
  clear_status(original.status());
  Container restored(env, "unix-listener-restored");
  ASSERT_TRUE(restored.restore(images, original.status())) << restored.last_output();
  ASSERT_TRUE(wait_for_progress(restored.status(), before_dump, 20s, &n, before_dump));
  EXPECT_TRUE(keep_progressing(restored.status(), 500ms));
}

// A real program: python3's asyncio with a unix echo server and its client in one process,
// lines in flight both ways (and asyncio's self-pipe socketpair, watched by its epoll).
TEST(CheckpointUnixSockets, PythonAsyncioEchoCarriesOn) {
  Workload w;
  w.name = "py_unix_echo";
  w.program = {"/usr/bin/python3", std::string(STASIS_SOURCE_DIR) + "/tests/workloads/py_unix_echo.py"};
  w.start_timeout = 30s;
  check_round_trip(w);
  RoundTrip leave;
  leave.leave_running = true;
  check_round_trip(w, leave);
}

// A listener bound to a relative path (its file's mode and owner), a seqpacket listener on an
// abstract name, accepted connections with data both ways, a bound datagram socket with
// datagrams from an unbound and an abstract-named sender, an unbound socket; and two
// connections accepted by the kernel only, one with data: after the restore the workload
// takes them (STATUS.accept) and finds them in order, with their data, and the backlog kept.
TEST(CheckpointUnixSockets, NamesListenersAndPendingConnections) {
  RoundTrip how;
  how.after_restore = [](Container& restored) {
    const fs::path accepted = restored.status().string() + ".accepted";
    std::ofstream(restored.status().string() + ".accept") << "go\n";
    std::string result;
    EXPECT_TRUE(wait_until(
        [&] {
          std::ifstream in(accepted);
          return std::getline(in, result) && !result.empty();
        },
        10s))
        << "the workload did not take its pending connections";
    EXPECT_EQ(result, "ok");
  };
  check_round_trip(c_workload("unix_names"), how);
}

// A connection waiting in an accept queue with data its client sent: that data is only reached
// by accept(), which --leave-running must not do. The dump says so and the job runs on.
TEST(CheckpointUnixSockets, PendingDataRefusedWithLeaveRunning) {
  CheckpointEnv env;
  Container original(env, "unix-pending");
  ASSERT_TRUE(original.run(c_workload("unix_names")));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 10s, &n));
  auto r = original.dump(env.image_dir("pending"), {"--leave-running"});
  ASSERT_FALSE(r) << "a dump --leave-running took a pending connection's data";
  const std::string message = r.message();
  EXPECT_NE(message.find("fd 6: unix stream socket: its connection waits, with data it sent, in the accept queue of"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("dump without --leave-running"), std::string::npos) << message;
  EXPECT_TRUE(wait_for_progress(original.status(), n, 10s, &n, n));
  EXPECT_TRUE(keep_progressing(original.status(), 300ms));
}

// The job's end of a connection to a listener outside it: refused by pid, fd, kind and the
// name it is connected to; the job runs on with the data still queued.
TEST(CheckpointUnixSockets, PeerOutsideTheJobIsRefused) {
  CheckpointEnv env;
  const fs::path path = env.work() / "outside.sock";
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  ASSERT_LT(path.string().size(), sizeof a.sun_path);
  std::strcpy(a.sun_path, path.c_str());
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << strerror(errno);
  ASSERT_EQ(::listen(listener, 1), 0);
  Container original(env, "unix-outside");
  ASSERT_TRUE(original.run(c_workload("unix_refused", {"outside", path.string()})));
  int conn = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(conn, 0) << strerror(errno);
  ASSERT_EQ(::send(conn, "ping", 4, 0), 4);
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 10s, &n));
  auto r = original.dump(env.image_dir("outside"));
  EXPECT_FALSE(r) << "a connection to outside the job was dumped";
  const std::string message = r.message();
  EXPECT_NE(message.find(fmt::format("fd 3: unix stream socket: connected to {}, which is outside the job",
                                     path.string())),
            std::string::npos)
      << message;
  EXPECT_TRUE(wait_for_progress(original.status(), n, 10s, &n, n));
  EXPECT_TRUE(keep_progressing(original.status(), 300ms));
  char buf[8];
  EXPECT_EQ(::recv(conn, buf, sizeof buf, MSG_DONTWAIT), -1) << "the job's end was closed";
  ::close(conn);
  ::close(listener);
}

// A file descriptor in flight (SCM_RIGHTS): refused by name; the job still finds it queued.
TEST(CheckpointUnixSockets, FdsInFlightAreRefused) {
  CheckpointEnv env;
  Container original(env, "unix-rights");
  ASSERT_TRUE(original.run(c_workload("unix_refused", {"rights"})));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 10s, &n));
  auto r = original.dump(env.image_dir("rights"), {"--leave-running"});
  EXPECT_FALSE(r) << "a socket with an fd in flight was dumped";
  const std::string message = r.message();
  EXPECT_NE(message.find("unix stream socket: 1 file descriptor(s) in flight in its queue (SCM_RIGHTS) are not "
                         "supported"),
            std::string::npos)
      << message;
  EXPECT_TRUE(wait_for_progress(original.status(), n, 10s, &n, n));
  EXPECT_TRUE(keep_progressing(original.status(), 300ms));
}

// A socketpair between two processes of a tree, one end held by both (nginx's master/worker
// channel), and a pair the child holds alone: every end comes back in one connection with its
// peer, so the parent's questions still reach the child and its answers come back.
TEST(CheckpointUnixSockets, PairAcrossATreeStaysOneConnection) {
  check_round_trip(c_workload("tree_channel"));
}

}  // namespace
}  // namespace stasis::test
