// Restore's injection into a real child that holds restore's code page (restore/code_page.h):
// a batch of calls runs in order, many in one round trip and across several when it is long,
// the first failure stops it (the calls after it are not run, and the checked form names the
// failing one), single calls work between batches, and the thread's registers and work are as
// they were once the injection ends.
#include "restore/remote.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"
#include "mm.pb.h"
#include "restore/code_page.h"
#include "tests/support/test_util.h"

namespace stasis::restore {
namespace {

using namespace std::chrono_literals;

TEST(RestoreRemote, BatchesRunInOrderAndStopAtTheFirstFailure) {
  // Shared with the child: its code page address, then its loop counter.
  auto* shared = static_cast<std::atomic<uint64_t>*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(shared, MAP_FAILED);
  new (&shared[0]) std::atomic<uint64_t>(0);
  new (&shared[1]) std::atomic<uint64_t>(0);
  {
    test::ForkedChild child([&] {
      shared[0] = map_code_page(pb::MmState{});
      for (;;) shared[1].fetch_add(1, std::memory_order_relaxed);
    });
    ASSERT_TRUE(test::wait_until([&] { return shared[1].load() != 0; }, 5s));
    const uint64_t page = shared[0].load();
    auto thread = ptrace::SeizedThread::seize(child.pid());
    thread.interrupt_and_wait();
    const user_regs_struct before = thread.get_regs();
    {
      Remote r(thread, child.pid(), page);
      // Longer than one round trip holds.
      std::vector<Remote::BatchCall> calls(40, Remote::BatchCall{"getpid", SYS_getpid});
      std::vector<long> results = r.call_batch(calls);
      ASSERT_EQ(results.size(), calls.size());
      for (long rc : results) EXPECT_EQ(rc, child.pid());

      // An mmap that works, a close that fails, and one never reached.
      std::vector<Remote::BatchCall> failing{
          {"mmap", SYS_mmap, {0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0}},
          {"close", SYS_close, {9999}},
          {"getpid", SYS_getpid},
      };
      results = r.call_batch(failing);
      EXPECT_GT(results[0], 0);
      EXPECT_EQ(results[1], -EBADF);
      EXPECT_EQ(results[2], Remote::kNotRun);
      const std::string error = test::error_of([&] { r.call_batch_checked(failing); });
      EXPECT_NE(error.find("remote close"), std::string::npos) << error;
      // The mapping made is there, and single calls go on working.
      EXPECT_EQ(r.call(SYS_munmap, static_cast<uint64_t>(results[0]), 8192), 0);
      EXPECT_EQ(r.call(SYS_getpid), child.pid());
    }
    const user_regs_struct after = thread.get_regs();
    EXPECT_EQ(std::memcmp(&before, &after, sizeof before), 0);
    const uint64_t stopped_at = shared[1].load();
    thread.detach();
    EXPECT_TRUE(test::wait_until([&] { return shared[1].load() > stopped_at + 1000; }, 5s));
  }
  munmap(shared, 4096);
}

}  // namespace
}  // namespace stasis::restore
