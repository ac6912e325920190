// Unix sockets: socketpairs with data in flight both ways, shutdown state and options
// (unix_pairs); names, listeners with their backlog and pending connections, accepted and
// datagram connections (unix_names); and what the dump refuses (unix_refused).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

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

}  // namespace
}  // namespace stasis::test
