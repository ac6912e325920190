// Real interpreters: a Python process with a large dict and a bash loop.
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

TEST(CheckpointRealPrograms, PythonDictSurvives) {
  Workload w = python_workload();
  w.watch = 2000ms;
  check_round_trip(w);
}

TEST(CheckpointRealPrograms, PythonLeaveRunning) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(python_workload(), how);
}

TEST(CheckpointRealPrograms, BashLoopSurvives) { check_round_trip(bash_workload()); }

}  // namespace
}  // namespace stasis::test
