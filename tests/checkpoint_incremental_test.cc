// Incremental dumps: `dump --pre-dump` saves memory while the job runs on and starts tracking
// what it writes (userfaultfd write-protect async + PAGEMAP_SCAN); `dump --parent DIR` saves
// only the pages written since and refers to DIR for the rest; restore reads the chain. The
// workload (dirtier) rewrites whole random pages all the time and checks every page against
// its own record every half second, so a page restored from the wrong link fails it.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

// Bytes of the page files of a checkpoint directory.
uint64_t page_bytes(const fs::path& dir) {
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("pages-", 0) == 0) n += fs::file_size(e.path());
  return n;
}

TEST(CheckpointIncremental, PreDumpsThenDumpWithParentRestoreTheChain) {
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  CheckpointEnv env;
  Container original(env, "incr");
  // 128 MiB, 16 pages rewritten every 10 ms: about 6 MiB/s of dirtying.
  ASSERT_TRUE(original.run(c_workload("dirtier", {"128", "16"})));
  const fs::path pre1 = env.work() / "pre1", pre2 = env.work() / "pre2", last = env.work() / "last";

  ASSERT_TRUE(original.dump(pre1, {"--pre-dump"}));
  EXPECT_NE(original.last_output().find("the job was left running"), std::string::npos) << original.last_output();
  uint64_t progress = 0;
  ASSERT_TRUE(keep_progressing(original.status(), 700ms, &progress)) << "the job does not run on after --pre-dump";
  ASSERT_TRUE(original.dump(pre2, {"--pre-dump", "--parent", pre1.string()}));
  EXPECT_NE(original.last_output().find("left to the parent checkpoint"), std::string::npos) << original.last_output();
  ASSERT_TRUE(keep_progressing(original.status(), 700ms, &progress));
  ASSERT_TRUE(original.dump(last, {"--parent", pre2.string()}));
  EXPECT_NE(original.last_output().find("left to the parent checkpoint"), std::string::npos) << original.last_output();
  ASSERT_TRUE(original.wait_gone());

  const uint64_t full = page_bytes(pre1), second = page_bytes(pre2), final_bytes = page_bytes(last);
  std::printf("page files: pre-dump %.1f MiB, second pre-dump %.1f MiB, final dump %.1f MiB\n", full / 1048576.0,
              second / 1048576.0, final_bytes / 1048576.0);
  EXPECT_GT(full, 100ull << 20);
  EXPECT_LT(second * 4, full) << "the second pre-dump saved more than a quarter of the memory";
  EXPECT_LT(final_bytes * 4, full) << "the final dump saved more than a quarter of the memory";

  CommandResult verify = env.stasis({"show", "--verify", last.string()});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  CommandResult show = env.stasis({"show", last.string()});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("\"chain\""), std::string::npos);
  EXPECT_NE(show.out.find("pre1"), std::string::npos);
  EXPECT_NE(show.out.find("\"parent_pages\""), std::string::npos);

  Container restored(env, "incr-r");
  ASSERT_TRUE(restored.restore(last, original.status()));
  // Six full checks of every page of the restored job.
  EXPECT_TRUE(keep_progressing(restored.status(), 3000ms));
}

// The same for a process of the host (`dump --pid`: seized with ptrace alone, no cgroup).
TEST(CheckpointIncremental, HostProcessByPid) {
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  CheckpointEnv env;
  HostProcess host;
  ASSERT_TRUE(host.start(c_workload("dirtier", {"64", "8"}), env.status_path("host")));
  const fs::path pre = env.work() / "pre", last = env.work() / "last";
  ASSERT_TRUE(env.dump_pid(host.pid(), pre, {"--pre-dump"})) << host.log_tail();
  ASSERT_TRUE(keep_progressing(host.status(), 700ms)) << "the process does not run on after --pre-dump";
  ASSERT_TRUE(env.dump_pid(host.pid(), last, {"--parent", pre.string()})) << host.log_tail();
  ASSERT_TRUE(host.wait_exit(20s));
  EXPECT_LT(page_bytes(last) * 4, page_bytes(pre));
  Container restored(env, "host-r");
  ASSERT_TRUE(restored.restore(last, host.status()));
  EXPECT_TRUE(keep_progressing(restored.status(), 2000ms));
}

// A tree: a parent and two children, each dirtying and checking its own copy of the memory.
// Every process is tracked from the pre-dump on; the final dump leaves each one's unwritten
// pages to the pre-dump, and the restored tree checks all of them.
TEST(CheckpointIncremental, ProcessTreePreDumpThenDumpWithParent) {
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  CheckpointEnv env;
  Container original(env, "incr-tree");
  ASSERT_TRUE(original.run(c_workload("dirtier", {"32", "8", "2"})));
  uint64_t progress = 0;
  ASSERT_TRUE(keep_progressing(original.status(), 300ms, &progress));
  const fs::path pre = env.work() / "pre", last = env.work() / "last";
  ASSERT_TRUE(original.dump(pre, {"--pre-dump"}));
  EXPECT_NE(original.last_output().find("3 processes"), std::string::npos) << original.last_output();
  ASSERT_TRUE(keep_progressing(original.status(), 700ms, &progress)) << "the tree does not run on after --pre-dump";
  ASSERT_TRUE(original.dump(last, {"--parent", pre.string()}));
  EXPECT_NE(original.last_output().find("left to the parent checkpoint"), std::string::npos) << original.last_output();
  ASSERT_TRUE(original.wait_gone());
  EXPECT_GT(page_bytes(pre), 90ull << 20) << "the pre-dump did not save the three processes' memory";
  EXPECT_LT(page_bytes(last) * 4, page_bytes(pre));
  CommandResult verify = env.stasis({"show", "--verify", last.string()});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;

  Container restored(env, "incr-tree-r");
  ASSERT_TRUE(restored.restore(last, original.status()));
  // Four full checks of every page of each process; a child gone or failing fails the parent.
  EXPECT_TRUE(keep_progressing(restored.status(), 2000ms));
}

TEST(CheckpointIncremental, MissingOrChangedParentIsAClearError) {
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  CheckpointEnv env;
  Container original(env, "chain");
  ASSERT_TRUE(original.run(c_workload("dirtier", {"16", "4"})));
  const fs::path pre = env.work() / "pre", last = env.work() / "last", moved = env.work() / "moved";
  ASSERT_TRUE(original.dump(pre, {"--pre-dump"}));
  ASSERT_TRUE(keep_progressing(original.status(), 300ms));
  ASSERT_TRUE(original.dump(last, {"--parent", pre.string()}));
  ASSERT_TRUE(original.wait_gone());

  // A pre-dump is not restored by itself.
  Container restored(env, "chain-r");
  EXPECT_FALSE(restored.restore(pre, original.status()));
  EXPECT_NE(restored.last_output().find("is a pre-dump"), std::string::npos) << restored.last_output();

  fs::rename(pre, moved);
  EXPECT_FALSE(restored.restore(last, original.status()));
  EXPECT_NE(restored.last_output().find(pre.string() + ", which is missing"), std::string::npos)
      << restored.last_output();
  CommandResult verify = env.stasis({"show", "--verify", last.string()});
  EXPECT_NE(verify.exit_code, 0);
  EXPECT_NE((verify.out + verify.err).find("which is missing"), std::string::npos) << verify.out << verify.err;
  fs::rename(moved, pre);

  // Another checkpoint in the parent's place (its inventory is not the one recorded).
  {
    std::ofstream inv(pre / "inventory.img", std::ios::app | std::ios::binary);
    inv << '\0';
  }
  EXPECT_FALSE(restored.restore(last, original.status()));
  EXPECT_NE(restored.last_output().find("which changed since"), std::string::npos) << restored.last_output();
}

// With its tracker gone, a job's next dump cannot know what was written: it saves every page
// (and says so), and the checkpoint stands alone.
TEST(CheckpointIncremental, DeadTrackerMeansAFullDump) {
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  CheckpointEnv env;
  Container original(env, "notrack");
  ASSERT_TRUE(original.run(c_workload("dirtier", {"32", "4"})));
  auto job = original.host_pid();
  ASSERT_TRUE(job);
  const fs::path pre = env.work() / "pre", last = env.work() / "last";
  ASSERT_TRUE(original.dump(pre, {"--pre-dump"}));

  // The record names the tracker (STATE_ROOT/dirty-tracking/<pid of the job's process>); the
  // container's PID 1 may be our init, so the record is found by its contents.
  pid_t tracker = 0;
  for (const auto& e : fs::directory_iterator(env.root() / "dirty-tracking")) {
    if (e.path().extension() == ".lock") continue;
    std::ifstream in(e.path());
    for (std::string key; in >> key;)
      if (key == "tracker_pid") in >> tracker;
  }
  ASSERT_GT(tracker, 0);
  ASSERT_EQ(::kill(tracker, SIGKILL), 0);
  for (int i = 0; i < 200 && process_alive(tracker); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_FALSE(process_alive(tracker));

  ASSERT_TRUE(keep_progressing(original.status(), 300ms));
  ASSERT_TRUE(original.dump(last, {"--parent", pre.string()}));
  EXPECT_NE(original.last_output().find("every page is saved"), std::string::npos) << original.last_output();
  EXPECT_EQ(original.last_output().find("left to the parent"), std::string::npos) << original.last_output();
  ASSERT_TRUE(original.wait_gone());
  EXPECT_GT(page_bytes(last), 30ull << 20);
  fs::remove_all(pre);  // not needed: the checkpoint stands alone

  Container restored(env, "notrack-r");
  ASSERT_TRUE(restored.restore(last, original.status()));
  EXPECT_TRUE(keep_progressing(restored.status(), 1500ms));
}

}  // namespace
}  // namespace stasis::test
