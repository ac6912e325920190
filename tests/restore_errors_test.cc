// Restore refuses bad checkpoints before starting anything, and a restore that fails half way
// leaves nothing behind: no container state, no cgroup, no process.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <filesystem>
#include <fstream>

#include "images/checkpoint.h"
#include "images/image_file.h"
#include "mm.pb.h"
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
      EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup") / controller / "stasis" / name))
          << controller << " cgroup left for " << name;
  }

  CheckpointEnv env_;
  fs::path images_;
  fs::path status_;
};

TEST_F(RestoreErrors, CorruptPageFileIsRefusedBeforeAnythingStarts) {
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

}  // namespace
}  // namespace stasis::test
