#include "launcher/cgroup_warmup.h"

#include <fcntl.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include <fstream>
#include <string>

#include "common/cgroup.h"

namespace stasis::launcher {

namespace {

// cgroup.procs of the cgroup we are in: v1 freezer, else the v2 one.
std::string own_procs_file() {
  std::ifstream in("/proc/self/cgroup");
  std::string line, v2_path;
  auto base = cgroup_fs_root();
  while (std::getline(in, line)) {
    size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (controllers == "freezer") return (base / "freezer").string() + path + "/cgroup.procs";
    if (controllers.empty()) v2_path = path;
  }
  if (v2_path.empty()) return "";
  struct statfs st {};
  bool pure_v2 = ::statfs(base.c_str(), &st) == 0 && static_cast<long>(st.f_type) == CGROUP2_SUPER_MAGIC;
  return (pure_v2 ? base : base / "unified").string() + v2_path + "/cgroup.procs";
}

}  // namespace

CgroupMoveWarmup::CgroupMoveWarmup() {
  std::string file = own_procs_file();
  if (file.empty()) return;
  procs_.reset(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
  if (!procs_) return;
  // Only a write(2) on the thread: no library lock is ever held by it when we fork.
  std::string pid = std::to_string(::getpid());
  thread_ = std::thread([fd = procs_.get(), pid] { (void)!::write(fd, pid.data(), pid.size()); });
}

CgroupMoveWarmup::~CgroupMoveWarmup() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace stasis::launcher
