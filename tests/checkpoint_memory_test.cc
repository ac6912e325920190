// Memory: every kind of mapping (mappings workload), and large anonymous memory (bigmem).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

// Files behind the mappings are shared with the original, so the original must be stopped
// (no --leave-running: its later writes to the shared file would change the restored one).
TEST(CheckpointMemory, MappingsComeBackWithContentsAndLayout) { check_round_trip(c_workload("mappings")); }

TEST(CheckpointMemory, Bigmem64MiBLeaveRunning) {
  Workload w = c_workload("bigmem", {"64"});
  w.watch = 3500ms;  // longer than one full re-hash period
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(w, how);
}

// The restored memory is charged to the restored container's cgroup and fits its limit.
TEST(CheckpointMemory, Bigmem256MiBUnderMemoryLimit) {
  Workload w = c_workload("bigmem", {"256"});
  w.start_timeout = 60s;
  w.watch = 3500ms;
  RoundTrip how;
  how.run_options = {"--memory", "400M"};
  how.after_restore = [](Container& restored) {
    auto v1 = restored.cgroup_path("memory");
    if (!v1) return;  // v2 hosts: memory.current would be the figure; v1 is what runs here
    std::ifstream in(std::filesystem::path(*v1) / "memory.usage_in_bytes");
    unsigned long long usage = 0;
    in >> usage;
    EXPECT_GE(usage, 200ull << 20) << "the restored 256 MiB are not charged to the container's cgroup";
    EXPECT_LE(usage, 400ull << 20);
  };
  check_round_trip(w, how);
}

TEST(CheckpointMemory, Bigmem1GiB) {
  Workload w = c_workload("bigmem", {"1024"});
  w.start_timeout = 90s;  // filling 1 GiB of fresh memory takes seconds here
  w.watch = 5000ms;       // covers a full re-hash of the restored gigabyte
  check_round_trip(w);
}

TEST(CheckpointMemory, Bigmem1GiBZstd) {
  Workload w = c_workload("bigmem", {"1024"});
  w.start_timeout = 90s;
  w.watch = 5000ms;
  RoundTrip how;
  how.dump_options = {"--compress", "zstd"};
  check_round_trip(w, how);
}

// Private anonymous pages go in through a userfaultfd of the restored task (UFFDIO_COPY); the
// other kinds of mapping, here a shared one and file-backed ones, through process_vm_writev.
TEST(CheckpointMemory, PagesGoInThroughUserfaultfd) {
  STASIS_REQUIRE_FEATURE("uffd-missing");
  CheckpointEnv env;
  Container original(env, "uffd");
  ASSERT_TRUE(original.run(c_workload("bigmem", {"64"})));
  fs::path images = env.work() / "images";
  ASSERT_TRUE(original.dump(images));
  Container restored(env, "uffd-r");
  ASSERT_TRUE(restored.restore(images, original.status(), {"-v"}));
  const std::string& out = restored.last_output();
  EXPECT_NE(out.find("MiB through userfaultfd"), std::string::npos) << out;
  EXPECT_EQ(out.find("(0 MiB through userfaultfd)"), std::string::npos) << out;
  EXPECT_TRUE(keep_progressing(restored.status(), 3500ms));
}

// Runs argv (output to /dev/null); its exit status and peak RSS in KiB (ru_maxrss of wait4).
std::pair<int, long> run_for_peak_rss(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int null_fd = open("/dev/null", O_WRONLY);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  struct rusage usage {};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), usage.ru_maxrss};
}

// A restore reads page files into bounded buffers, never maps them whole: its peak RSS stays
// far below the size of the checkpoint (it was the size of the page file plus a few MiB).
TEST(CheckpointMemory, RestoreMemoryStaysBounded) {
  CheckpointEnv env;
  for (const char* compression : {"none", "zstd"}) {
    SCOPED_TRACE(compression);
    Container original(env, "rss");
    Workload w = c_workload("bigmem", {"256"});
    w.start_timeout = 60s;
    ASSERT_TRUE(original.run(w));
    fs::path images = env.work() / (std::string("images-") + compression);
    ASSERT_TRUE(original.dump(images, {"--compress", compression}));
    // Restored by hand (for its rusage), so removed by hand, even when an assertion fails.
    struct Removed {
      CheckpointEnv& env;
      std::string name;
      ~Removed() { env.stasis({"rm", "-f", name}); }
    } restored{env, env.unique_name("rss-r")};
    auto [code, rss_kib] = run_for_peak_rss({stasis_binary(), "--root", env.root().string(), "restore", "-D",
                                             images.string(), "--name", restored.name, "-d"});
    ASSERT_EQ(code, 0);
    EXPECT_LT(rss_kib, 64 << 10) << "peak RSS of the restore of 256 MiB: " << (rss_kib >> 10) << " MiB";
    EXPECT_TRUE(keep_progressing(original.status(), 1500ms));
  }
}

// Locked, sealed and MADV_DONTDUMP mappings keep those flags.
TEST(CheckpointMemory, LockedAndSealedMappingsStaySo) {
  STASIS_REQUIRE_FEATURE("mseal");
  check_round_trip(c_workload("vmflags"));
}

// madvise advice per mapping (smaps VmFlags), mlockall(MCL_FUTURE), THP disabled and
// membarrier registrations.
TEST(CheckpointMemory, AdviceAndAddressSpaceSettingsComeBack) { check_round_trip(c_workload("mmstate")); }

TEST(CheckpointMemory, AdviceAndAddressSpaceSettingsLeaveRunning) {
  RoundTrip how;
  how.leave_running = true;
  check_round_trip(c_workload("mmstate"), how);
}

// Guard regions (MADV_GUARD_INSTALL) inside a mapping stay guards.
TEST(CheckpointMemory, GuardRegionsStayGuards) {
  STASIS_REQUIRE_FEATURE("guard-regions");
  check_round_trip(c_workload("guards"));
}

// A kernel without some feature, as STASIS_FAULT=NAME makes stasis believe (common/fault.h);
// the same workloads must come back whole by the other way.
class WithFault : public ::testing::Test {
 protected:
  explicit WithFault(const char* fault) { ::setenv("STASIS_FAULT", fault, 1); }
  ~WithFault() override { ::unsetenv("STASIS_FAULT"); }
  static void mappings() { check_round_trip(c_workload("mappings")); }
  static void bigmem_64mib() {
    Workload w = c_workload("bigmem", {"64"});
    w.watch = 3500ms;
    check_round_trip(w);
  }
};

// No userfaultfd: every page goes in through process_vm_writev.
class WithoutUserfaultfd : public WithFault {
 protected:
  WithoutUserfaultfd() : WithFault("restore-no-userfaultfd") {}
};
TEST_F(WithoutUserfaultfd, MappingsComeBack) { mappings(); }
TEST_F(WithoutUserfaultfd, Bigmem64MiB) { bigmem_64mib(); }

// A kernel older than 6.7 (no PAGEMAP_SCAN): the dump reads /proc/PID/pagemap instead.
class WithoutPagemapScan : public WithFault {
 protected:
  WithoutPagemapScan() : WithFault("dump-no-pagemap-scan") {}
};
TEST_F(WithoutPagemapScan, MappingsComeBack) { mappings(); }
TEST_F(WithoutPagemapScan, Bigmem64MiB) { bigmem_64mib(); }
TEST_F(WithoutPagemapScan, GuardRegionsStayGuards) {
  STASIS_REQUIRE_FEATURE("guard-regions");
  check_round_trip(c_workload("guards"));
}

}  // namespace
}  // namespace stasis::test
