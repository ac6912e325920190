// Restore refuses bad checkpoints before starting anything, and a restore that fails half way
// leaves nothing behind: no container state, no cgroup, no process. Page data is checked as it
// goes in: a bad chunk, or a page file changed while the restore runs, fails the restore.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "cgroup.pb.h"
#include "common/cgroup.h"
#include "common/error.h"
#include "images/checkpoint.h"
#include "images/image_file.h"
#include "images/page_file.h"
#include "launcher/config.h"
#include "mm.pb.h"
#include "restore/cgroup_state.h"
#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

// A dumped counter (the original is gone), and its images.
class RestoreErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    images_ = env_.image_dir("counter");
    Container original(env_, "orig");
    ASSERT_TRUE(original.run(c_workload("counter")));
    ASSERT_TRUE(original.dump(images_));
    status_ = original.status();
  }

  // Runs `stasis restore` expecting failure; returns its stderr.
  std::string restore_fails(const fs::path& dir, const std::string& name, const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv{"env"};
    argv.insert(argv.end(), env.begin(), env.end());
    argv.insert(argv.end(), {stasis_binary(), "--root", env_.root().string(), "restore", "-D", dir.string(), "--name",
                             name, "-d"});
    CommandResult r = run_command(argv, std::chrono::seconds(60));
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    expect_nothing_left(name);
    return r.err;
  }

  void expect_nothing_left(const std::string& name) {
    EXPECT_FALSE(fs::exists(env_.root() / (name + ".state"))) << "state file left for " << name;
    for (const char* controller : {"freezer", "memory", "pids", "cpu"})
      EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup") / controller / launcher::cgroup_parent_for(env_.root()) / name))
          << controller << " cgroup left for " << name;
  }

  CheckpointEnv env_;
  fs::path images_;
  fs::path status_;
};

TEST_F(RestoreErrors, CorruptPageFileIsRefusedAndLeavesNothingBehind) {
  {
    std::fstream f(images_ / "pages-1.img", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.write("XXXX", 4);
  }
  std::string err = restore_fails(images_, env_.unique_name("corrupt"));
  EXPECT_NE(err.find("pages-1.img"), std::string::npos) << err;
  EXPECT_NE(err.find("checksum"), std::string::npos) << err;
}

TEST_F(RestoreErrors, MissingImageIsNamed) {
  fs::remove(images_ / "mm-1.img");
  std::string err = restore_fails(images_, env_.unique_name("missing"));
  EXPECT_NE(err.find("mm-1.img is missing"), std::string::npos) << err;
}

TEST_F(RestoreErrors, MissingDirectoryIsNamed) {
  std::string err = restore_fails(env_.work() / "no-such-checkpoint", env_.unique_name("nodir"));
  EXPECT_NE(err.find("no-such-checkpoint"), std::string::npos) << err;
}

TEST_F(RestoreErrors, DifferentVdsoIsRefused) {
  // Pretend the dumping kernel's vDSO was one page larger, and reseal the checkpoint.
  pb::MmState mm;
  images::read_single(images_ / "mm-1.img", images::ImageType::Mm, mm);
  bool changed = false;
  for (auto& vma : *mm.mutable_vmas())
    if (vma.kind() == pb::Vma::VDSO) {
      vma.set_end(vma.end() + 4096);
      changed = true;
    }
  ASSERT_TRUE(changed) << "no [vdso] in the image";
  images::write_single(images_ / "mm-1.img", images::ImageType::Mm, mm);
  auto checkpoint = images::Checkpoint::open(images_);
  checkpoint.finalize(checkpoint.inventory());
  std::string err = restore_fails(images_, env_.unique_name("vdso"));
  EXPECT_NE(err.find("[vdso]"), std::string::npos) << err;
  EXPECT_NE(err.find("vDSO differs"), std::string::npos) << err;
}

TEST_F(RestoreErrors, ChangedExecutableIsRefused) {
  // The exe of the image is a copy we own, so we may touch it.
  pb::MmState mm;
  images::read_single(images_ / "mm-1.img", images::ImageType::Mm, mm);
  const fs::path copy = env_.work() / "counter-copy";
  fs::copy_file(mm.exe_path(), copy);
  for (auto& vma : *mm.mutable_vmas())
    if (vma.path() == mm.exe_path()) {
      vma.set_path(copy.string());
      struct stat st;
      ASSERT_EQ(stat(copy.c_str(), &st), 0);
      vma.mutable_file()->set_size(static_cast<uint64_t>(st.st_size));
      vma.mutable_file()->set_mtime_ns(int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec - 1);
    }
  images::write_single(images_ / "mm-1.img", images::ImageType::Mm, mm);
  auto checkpoint = images::Checkpoint::open(images_);
  checkpoint.finalize(checkpoint.inventory());
  std::string err = restore_fails(images_, env_.unique_name("changed"));
  EXPECT_NE(err.find(copy.string()), std::string::npos) << err;
  EXPECT_NE(err.find("changed since the dump"), std::string::npos) << err;
}

// The dumped cgroup's cpuset, rewritten into cgroup.img and the checkpoint resealed.
void set_dumped_cpuset(const fs::path& images, const std::string& cpus) {
  pb::CgroupState cgroup;
  images::read_single(images / "cgroup.img", images::ImageType::Cgroup, cgroup);
  cgroup.set_cpuset_cpus(cpus);
  images::write_single(images / "cgroup.img", images::ImageType::Cgroup, cgroup);
  auto checkpoint = images::Checkpoint::open(images);
  checkpoint.finalize(checkpoint.inventory());
}

// A cpuset none of whose CPUs this host has: refused before anything is made.
TEST_F(RestoreErrors, CpusetWithNoCpuHereIsRefused) {
  set_dumped_cpuset(images_, "4000-4001");
  const std::string name = env_.unique_name("nocpu");
  std::string err = restore_fails(images_, name);
  EXPECT_NE(err.find("CPUs 4000-4001"), std::string::npos) << err;
  EXPECT_NE(err.find("none of which is online here"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup/cpuset") / launcher::cgroup_parent_for(env_.root()) / name));
}

// A cpuset with some CPUs this host lacks is cut to those it has, as thread affinities are.
TEST_F(RestoreErrors, CpusetIsCutToTheCpusHere) {
  set_dumped_cpuset(images_, "1,4000");
  Container restored(env_, "cut");
  ASSERT_TRUE(restored.restore(images_, status_));
  ASSERT_TRUE(wait_for_progress(restored.status(), 0, 30s));
  auto dir = restored.cgroup_path(detect_cgroup_driver() == CgroupDriver::V2 ? "unified" : "cpuset");
  ASSERT_TRUE(dir.has_value()) << "ps --json shows no cpuset cgroup for " << restored.name();
  std::ifstream in(fs::path(*dir) / "cpuset.cpus");
  std::string cpus;
  std::getline(in, cpus);
  EXPECT_EQ(cpus, "1");
}

TEST(CpuList, CommonCpusAsAList) {
  EXPECT_EQ(restore::cpus_in_both("0-3,6", "0-1"), "0-1");
  EXPECT_EQ(restore::cpus_in_both("0,1,2,5-7", "1-6"), "1-2,5-6");
  EXPECT_EQ(restore::cpus_in_both("8-9", "0-1\n"), "");
  EXPECT_EQ(restore::cpus_in_both("3", "0-7\n"), "3");
  EXPECT_THROW(restore::cpus_in_both("2-1", "0-7"), Error);
  EXPECT_THROW(restore::cpus_in_both("0;1", "0-7"), Error);
  EXPECT_THROW(restore::cpus_in_both("99999999", "0-7"), Error);
}

TEST_F(RestoreErrors, NameInUseIsRefusedAndTheFirstKeepsRunning) {
  Container first(env_, "dup");
  ASSERT_TRUE(first.restore(images_, status_));
  CommandResult r = env_.stasis({"restore", "-D", images_.string(), "--name", first.name(), "-d"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  EXPECT_TRUE(keep_progressing(status_, std::chrono::milliseconds(500)));
}

TEST_F(RestoreErrors, FailureAfterMemoryLeavesNothingBehind) {
  std::string err = restore_fails(images_, env_.unique_name("fault"), {"STASIS_FAULT=restore-after-memory"});
  EXPECT_NE(err.find("injected fault"), std::string::npos) << err;
}

TEST_F(RestoreErrors, FailureBeforeFinishLeavesNothingBehind) {
  std::string err = restore_fails(images_, env_.unique_name("fault"), {"STASIS_FAULT=restore-before-finish"});
  EXPECT_NE(err.find("injected fault"), std::string::npos) << err;
}

// A dumped bigmem of 24 MiB: page data in several chunks of 4 MiB.
class RestorePageChecks : public ::testing::Test {
 protected:
  void SetUp() override {
    images_ = env_.image_dir("bigmem");
    Container original(env_, "orig");
    ASSERT_TRUE(original.run(c_workload("bigmem", {"24"})));
    ASSERT_TRUE(original.dump(images_, {"--compress", "none"}));
    status_ = original.status();
    UniqueFd fd(::open(pages().c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd);
    chunks_ = images::read_page_file_layout(fd.get(), pages()).chunks;
    ASSERT_GE(chunks_.size(), 5u);
  }

  fs::path pages() const { return images_ / "pages-1.img"; }

  // Flips one byte of the file.
  void flip(uint64_t offset) {
    std::fstream f(pages(), std::ios::binary | std::ios::in | std::ios::out);
    f.seekg(static_cast<std::streamoff>(offset));
    char ch = 0;
    f.get(ch);
    f.seekp(static_cast<std::streamoff>(offset));
    f.put(static_cast<char>(ch ^ 0x5a));
    ASSERT_TRUE(f.good());
  }

  // Changes a byte of an uncompressed chunk's data and rewrites its header to match, as a
  // writer that knows the format would: only the checksums sealed by the inventory differ.
  void rewrite_chunk(const images::PageChunk& c) {
    ASSERT_EQ(c.code, 0) << "chunk at " << c.offset << " is compressed";
    std::fstream f(pages(), std::ios::binary | std::ios::in | std::ios::out);
    std::vector<char> bytes(32 + c.stored_size);
    f.seekg(static_cast<std::streamoff>(c.offset));
    f.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    bytes[32 + c.stored_size / 2] ^= 0x5a;
    const uint64_t data_sum = XXH3_64bits(bytes.data() + 32, c.stored_size);
    std::memcpy(bytes.data() + 16, &data_sum, 8);
    const uint64_t header_sum = XXH3_64bits(bytes.data(), 24);
    std::memcpy(bytes.data() + 24, &header_sum, 8);
    f.seekp(static_cast<std::streamoff>(c.offset));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(f.good());
  }

  // Runs `stasis restore` (with env) expecting failure; checks that nothing is left; returns
  // its stderr. While the restore is paused at restore-before-fill (after every up-front check,
  // its container started), runs `change`.
  std::string restore_fails(const std::string& name, const std::function<void()>& change = {}) {
    std::vector<std::string> argv{"env"};
    const fs::path marker = env_.work() / "paused";
    if (change) {
      argv.push_back("STASIS_FAULT=restore-before-fill");
      argv.push_back("STASIS_FAULT_PAUSE=" + marker.string());
    }
    argv.insert(argv.end(), {stasis_binary(), "--root", env_.root().string(), "restore", "-D", images_.string(),
                             "--name", name, "-d"});
    CommandResult r;
    std::thread restore([&] { r = run_command(argv, std::chrono::seconds(90)); });
    if (change) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (!fs::exists(marker) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      EXPECT_TRUE(fs::exists(marker)) << "the restore never paused before its fill";
      // The container is up: the change lands between its start and the fill.
      CommandResult ps = env_.stasis({"ps", "-a"});
      EXPECT_NE(ps.out.find(name), std::string::npos) << ps.out;
      change();
      fs::remove(marker);
    }
    restore.join();
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    expect_nothing_left(name);
    return r.err;
  }

  void expect_nothing_left(const std::string& name) {
    EXPECT_FALSE(fs::exists(env_.root() / (name + ".state"))) << "state file left for " << name;
    for (const char* controller : {"freezer", "memory", "pids", "cpu"})
      EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup") / controller / launcher::cgroup_parent_for(env_.root()) / name))
          << controller << " cgroup left for " << name;
    CommandResult ps = env_.stasis({"ps", "-a"});
    EXPECT_EQ(ps.out.find(name), std::string::npos) << "ps still lists " << name << ":\n" << ps.out;
    // The restored job would have the workload's command line, which names its status file.
    for (const auto& entry : fs::directory_iterator("/proc")) {
      const std::string pid = entry.path().filename().string();
      if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream in(entry.path() / "cmdline");
      std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      EXPECT_EQ(cmdline.find(status_.string()), std::string::npos) << "process " << pid << " left: " << cmdline;
    }
  }

  // "pages-1.img: offset N: chunk: checksum mismatch" for the chunk c.
  void expect_names_chunk(const std::string& err, const images::PageChunk& c) {
    EXPECT_NE(err.find("pages-1.img: offset " + std::to_string(c.offset) + ": chunk: checksum mismatch"),
              std::string::npos)
        << err;
  }

  CheckpointEnv env_;
  fs::path images_;
  fs::path status_;
  std::vector<images::PageChunk> chunks_;
};

TEST_F(RestorePageChecks, CorruptChunkInTheMiddleFailsTheRestore) {
  const images::PageChunk& c = chunks_[chunks_.size() / 2];
  flip(c.offset + 32 + c.stored_size / 2);
  std::string err = restore_fails(env_.unique_name("middle"));
  expect_names_chunk(err, c);
}

TEST_F(RestorePageChecks, CorruptLastByteOfTheFileFailsTheRestore) {
  const images::PageChunk& c = chunks_.back();
  ASSERT_EQ(c.offset + 32 + c.stored_size, fs::file_size(pages()));
  flip(c.offset + 32 + c.stored_size - 1);
  std::string err = restore_fails(env_.unique_name("end"));
  expect_names_chunk(err, c);
}

// The page file passes every check before the container starts, then changes before its
// pages go in: the restore must fail, not run the job with the new bytes.
TEST_F(RestorePageChecks, PageFileChangedDuringTheRestoreFailsIt) {
  const images::PageChunk& c = chunks_[chunks_.size() / 2];
  std::string err = restore_fails(env_.unique_name("changed"), [&] { flip(c.offset + 32 + c.stored_size / 3); });
  expect_names_chunk(err, c);
}

// The same with the chunk's header rewritten to match its new data: only the checksums that
// the inventory sealed, read before the start, can tell.
TEST_F(RestorePageChecks, ChunkRewrittenWithAMatchingHeaderDuringTheRestoreFailsIt) {
  const images::PageChunk& c = chunks_[1];
  std::string err = restore_fails(env_.unique_name("rewritten"), [&] { rewrite_chunk(c); });
  expect_names_chunk(err, c);
}

// The same rewrite before the restore is refused before anything starts.
TEST_F(RestorePageChecks, ChunkRewrittenWithAMatchingHeaderIsRefusedUpFront) {
  rewrite_chunk(chunks_[1]);
  std::string err = restore_fails(env_.unique_name("resealed"));
  EXPECT_NE(err.find("pages-1.img checksum mismatch"), std::string::npos) << err;
}

// Unchanged, the paused restore goes on and the job runs on.
TEST_F(RestorePageChecks, PausedRestoreOfAnIntactFileSucceeds) {
  const fs::path marker = env_.work() / "paused";
  Container restored(env_, "intact");
  std::thread unpause([&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!fs::exists(marker) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    fs::remove(marker);
  });
  ::setenv("STASIS_FAULT", "restore-before-fill", 1);
  ::setenv("STASIS_FAULT_PAUSE", marker.c_str(), 1);
  const bool ok = restored.restore(images_, status_);
  ::unsetenv("STASIS_FAULT");
  ::unsetenv("STASIS_FAULT_PAUSE");
  unpause.join();
  ASSERT_TRUE(ok) << restored.last_output();
  EXPECT_TRUE(keep_progressing(status_, std::chrono::milliseconds(1500)));
}

}  // namespace
}  // namespace stasis::test
