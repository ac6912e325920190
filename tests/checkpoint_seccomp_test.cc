// seccomp: filters survive dump and restore, in force in every thread, shared (TSYNC) or per
// thread; the dump and the restore inject system calls the filters would kill the job for
// (getitimer; set_robust_list, set_tid_address), which must not reach them. A filter that hands calls to a supervisor is
// refused and the job runs on.
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

TEST(CheckpointSeccomp, SharedFiltersComeBack) { check_round_trip(c_workload("seccomp")); }

TEST(CheckpointSeccomp, SharedFiltersLeaveRunning) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(c_workload("seccomp"), how);
}

TEST(CheckpointSeccomp, PerThreadFiltersComeBack) { check_round_trip(c_workload("seccomp", {"split"})); }

TEST(CheckpointSeccomp, SupervisedFilterIsRefusedAndJobRunsOn) {
  CheckpointEnv env;
  Container job(env, "seccomp-notify");
  ASSERT_TRUE(job.run(c_workload("seccomp", {"notify"})));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(job.status(), 0, 10s, &n));
  auto r = job.dump(env.image_dir("notify"));
  ASSERT_FALSE(r) << "the dump should refuse a SECCOMP_RET_USER_NOTIF filter";
  EXPECT_NE(std::string(r.message()).find("SECCOMP_RET_USER_NOTIF"), std::string::npos) << r.message();
  EXPECT_TRUE(wait_for_progress(job.status(), n, 10s)) << "the job must run on after the refusal";
}

}  // namespace
}  // namespace stasis::test
