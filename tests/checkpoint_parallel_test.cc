// Several checkpoints and restores at once: one image set restored twice side by side, and
// two containers dumped and restored concurrently.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

// Both copies write the same status file (it is the path in the image), so each copy's own
// liveness is checked through its context switches; the file shows that they run correctly.
TEST(CheckpointParallel, SameImagesRestoredTwiceAtOnce) {
  CheckpointEnv env;
  Container original(env, "twice");
  ASSERT_TRUE(original.run(c_workload("counter")));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(original.status(), 0, 10s, &n));
  auto original_pid = original.host_pid();
  ASSERT_TRUE(original_pid.has_value());
  auto original_nspid = namespace_pid(*original_pid);
  fs::path images = env.image_dir("twice");
  const fs::path status = original.status();
  ASSERT_TRUE(original.dump(images));
  ASSERT_TRUE(original.wait_gone());
  n = std::max(n, read_status(status).progress);
  clear_status(status);

  Container a(env, "twice-a"), b(env, "twice-b");
  ::testing::AssertionResult ra = ::testing::AssertionFailure(), rb = ::testing::AssertionFailure();
  std::thread ta([&] { ra = a.restore(images, status); });
  std::thread tb([&] { rb = b.restore(images, status); });
  ta.join();
  tb.join();
  ASSERT_TRUE(ra);
  ASSERT_TRUE(rb);
  ASSERT_TRUE(wait_for_progress(status, n, 30s, &n, n));
  auto pa = a.host_pid(), pb = b.host_pid();
  ASSERT_TRUE(pa.has_value() && pb.has_value()) << "ps --json must show both restored containers";
  EXPECT_NE(*pa, *pb);
  EXPECT_EQ(namespace_pid(*pa), original_nspid);
  EXPECT_EQ(namespace_pid(*pb), original_nspid);
  long long ca = context_switches(*pa), cb = context_switches(*pb);
  // Each copy writes its own count into the one file: it may step back by as much as the two
  // restores finished apart, so here only a FAIL or a standstill is an error.
  std::uint64_t highest = n;
  for (auto end = std::chrono::steady_clock::now() + 1500ms; std::chrono::steady_clock::now() < end;) {
    WorkloadStatus s = read_status(status);
    ASSERT_NE(s.kind, WorkloadStatus::Kind::kFail) << s.raw;
    if (s.kind == WorkloadStatus::Kind::kOk) highest = std::max(highest, s.progress);
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GT(highest, n) << "neither copy counts on";
  EXPECT_GT(context_switches(*pa), ca) << "copy a does not run";
  EXPECT_GT(context_switches(*pb), cb) << "copy b does not run";
  EXPECT_TRUE(process_alive(*pa) && process_alive(*pb));
  // Seen from inside, each container's PID 1 is the restored counter.
  for (Container* c : {&a, &b}) {
    auto r = env.stasis({"exec", c->name(), "--", "cat", "/proc/1/status"}, 20s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("Name:\tcounter"), std::string::npos) << c->name() << ": " << r.out;
  }
}

TEST(CheckpointParallel, TwoContainersDumpedAndRestoredConcurrently) {
  CheckpointEnv env;
  Container c1(env, "par-counter"), c2(env, "par-signals");
  ASSERT_TRUE(c1.run(c_workload("counter")));
  ASSERT_TRUE(c2.run(c_workload("signals")));
  std::uint64_t n1 = 0, n2 = 0;
  ASSERT_TRUE(wait_for_progress(c1.status(), 0, 10s, &n1));
  ASSERT_TRUE(wait_for_progress(c2.status(), 0, 10s, &n2));
  fs::path i1 = env.image_dir("par1"), i2 = env.image_dir("par2");
  ::testing::AssertionResult d1 = ::testing::AssertionFailure(), d2 = ::testing::AssertionFailure();
  std::thread t1([&] { d1 = c1.dump(i1); });
  std::thread t2([&] { d2 = c2.dump(i2); });
  t1.join();
  t2.join();
  ASSERT_TRUE(d1);
  ASSERT_TRUE(d2);
  ASSERT_TRUE(c1.wait_gone());
  ASSERT_TRUE(c2.wait_gone());
  const fs::path s1 = c1.status(), s2 = c2.status();
  n1 = std::max(n1, read_status(s1).progress);
  n2 = std::max(n2, read_status(s2).progress);
  clear_status(s1);
  clear_status(s2);

  Container r1(env, "par-counter-r"), r2(env, "par-signals-r");
  std::thread u1([&] { d1 = r1.restore(i1, s1); });
  std::thread u2([&] { d2 = r2.restore(i2, s2); });
  u1.join();
  u2.join();
  ASSERT_TRUE(d1);
  ASSERT_TRUE(d2);
  ASSERT_TRUE(wait_for_progress(s1, n1, 30s, &n1, n1));
  ASSERT_TRUE(wait_for_progress(s2, n2, 30s, &n2, n2));
  ASSERT_TRUE(keep_progressing(s1, 1500ms));
  ASSERT_TRUE(keep_progressing(s2, 1000ms));
}

}  // namespace
}  // namespace stasis::test
