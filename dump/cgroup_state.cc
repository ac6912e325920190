#include "dump/cgroup_state.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "common/error.h"
#include "common/file_util.h"

namespace stasis::dump {

namespace {

namespace fs = std::filesystem;

std::string v2_root() {
  return fs::exists("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified";
}

// The first line of a cgroup file, or "" when the file is missing.
std::string read_value(const std::map<std::string, std::string>& paths, const std::string& controller,
                       const std::string& file) {
  auto it = paths.find(controller);
  if (it == paths.end()) return "";
  fs::path p = fs::path(it->second) / file;
  if (!fs::exists(p)) return "";
  std::string v = read_file(p);
  auto nl = v.find('\n');
  if (nl != std::string::npos) v.resize(nl);
  return v;
}

int64_t to_limit(const std::string& v) {
  if (v.empty() || v == "max" || v == "-1") return 0;
  unsigned long long n = std::strtoull(v.c_str(), nullptr, 10);
  // v1 reports "no limit" as a huge page-rounded number.
  if (n >= (1ull << 62)) return 0;
  return static_cast<int64_t>(n);
}

}  // namespace

std::map<std::string, std::string> cgroup_paths_of(pid_t pid, CgroupDriver driver) {
  std::map<std::string, std::string> out;
  std::istringstream in(read_file(fmt::format("/proc/{}/cgroup", pid)));
  std::string line;
  while (std::getline(in, line)) {
    size_t a = line.find(':');
    size_t b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    std::string rel = line.substr(b + 1);
    if (driver == CgroupDriver::V2) {
      if (line.rfind("0::", 0) == 0) out["unified"] = v2_root() + rel;
      continue;
    }
    std::istringstream cs(controllers);
    std::string c;
    while (std::getline(cs, c, ',')) {
      if (c.empty() || c.rfind("name=", 0) == 0) continue;
      // Co-mounted controllers (cpu,cpuacct) share one directory named after the pair.
      fs::path dir = fs::path("/sys/fs/cgroup") / c;
      if (!fs::exists(dir)) dir = fs::path("/sys/fs/cgroup") / controllers;
      out[c] = (dir / rel.substr(rel.empty() || rel[0] != '/' ? 0 : 1)).string();
    }
  }
  if (out.empty()) fail("/proc/{}/cgroup: no {} cgroup", pid, cgroup_driver_name(driver));
  return out;
}

pb::CgroupState collect_cgroup_state(CgroupDriver driver, const std::map<std::string, std::string>& paths) {
  pb::CgroupState s;
  s.set_driver(cgroup_driver_name(driver));
  std::string base = driver == CgroupDriver::V2 ? v2_root() : "/sys/fs/cgroup/memory";
  std::string key = driver == CgroupDriver::V2 ? "unified" : "memory";
  auto it = paths.find(key);
  if (it == paths.end() && !paths.empty()) it = paths.begin();
  if (it != paths.end()) {
    std::string p = it->second;
    if (driver == CgroupDriver::V1) base = "/sys/fs/cgroup/" + it->first;
    s.set_path(p.rfind(base, 0) == 0 ? (p.size() == base.size() ? "/" : p.substr(base.size())) : p);
  }
  s.set_cpu_period_us(100000);
  if (driver == CgroupDriver::V2) {
    s.set_memory_max(to_limit(read_value(paths, "unified", "memory.max")));
    std::istringstream cpu(read_value(paths, "unified", "cpu.max"));
    std::string quota, period;
    if (cpu >> quota >> period) {
      s.set_cpu_quota_us(to_limit(quota));
      s.set_cpu_period_us(to_limit(period));
    }
    s.set_pids_max(to_limit(read_value(paths, "unified", "pids.max")));
    s.set_cpuset_cpus(read_value(paths, "unified", "cpuset.cpus"));
  } else {
    s.set_memory_max(to_limit(read_value(paths, "memory", "memory.limit_in_bytes")));
    s.set_cpu_quota_us(to_limit(read_value(paths, "cpu", "cpu.cfs_quota_us")));
    std::string period = read_value(paths, "cpu", "cpu.cfs_period_us");
    if (!period.empty()) s.set_cpu_period_us(to_limit(period));
    s.set_pids_max(to_limit(read_value(paths, "pids", "pids.max")));
    s.set_cpuset_cpus(read_value(paths, "cpuset", "cpuset.cpus"));
  }
  return s;
}

}  // namespace stasis::dump
