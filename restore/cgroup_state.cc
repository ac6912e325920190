#include "restore/cgroup_state.h"

#include <cctype>
#include <cstdlib>
#include <vector>

#include "cgroup.pb.h"
#include "common/error.h"
#include "common/file_util.h"
#include "common/log.h"
#include "images/image_file.h"

namespace stasis::restore {
namespace {

// Far above any real CPU number: a bound on what a list may make us allocate.
constexpr long kMaxCpu = 1 << 16;

std::vector<bool> parse_cpu_list(const std::string& list) {
  std::vector<bool> cpus;
  const char* p = list.c_str();
  auto number = [&] {
    if (!std::isdigit(static_cast<unsigned char>(*p))) fail("CPU list '{}': expected a number at '{}'", list, p);
    char* end = nullptr;
    long n = std::strtol(p, &end, 10);
    if (n >= kMaxCpu) fail("CPU list '{}': CPU {} is out of range", list, n);
    p = end;
    return n;
  };
  while (*p != '\0' && *p != '\n') {
    long first = number(), last = first;
    if (*p == '-') {
      ++p;
      last = number();
    }
    if (last < first) fail("CPU list '{}': range {}-{} is backwards", list, first, last);
    if (cpus.size() <= static_cast<size_t>(last)) cpus.resize(static_cast<size_t>(last) + 1);
    for (long c = first; c <= last; ++c) cpus[static_cast<size_t>(c)] = true;
    if (*p == ',') {
      ++p;
    } else if (*p != '\0' && *p != '\n') {
      fail("CPU list '{}': unexpected '{}'", list, p);
    }
  }
  return cpus;
}

}  // namespace

std::string cpus_in_both(const std::string& wanted, const std::string& present) {
  std::vector<bool> a = parse_cpu_list(wanted), b = parse_cpu_list(present);
  std::string out;
  for (size_t c = 0; c < a.size(); ++c) {
    if (!a[c] || c >= b.size() || !b[c]) continue;
    size_t last = c;
    while (last + 1 < a.size() && a[last + 1] && last + 1 < b.size() && b[last + 1]) ++last;
    if (!out.empty()) out += ',';
    out += last == c ? std::to_string(c) : fmt::format("{}-{}", c, last);
    c = last;
  }
  return out;
}

void apply_cgroup_state(const images::Checkpoint& checkpoint, pb::ContainerConfig& config) {
  using images::ImageType;
  if (!checkpoint.exists(ImageType::Cgroup)) return;
  pb::CgroupState cgroup;
  images::read_single(checkpoint.path(ImageType::Cgroup), ImageType::Cgroup, cgroup);
  config.set_memory_max(cgroup.memory_max());
  config.set_pids_max(cgroup.pids_max());
  const bool quota = cgroup.cpu_quota_us() > 0 && cgroup.cpu_period_us() > 0;
  config.set_cpus(quota ? static_cast<double>(cgroup.cpu_quota_us()) / static_cast<double>(cgroup.cpu_period_us()) : 0);
  config.set_cpu_period_us(quota ? cgroup.cpu_period_us() : 0);
  config.set_cpuset(cgroup.cpuset_cpus());
  if (cgroup.cpuset_cpus().empty()) return;
  // As thread affinities are: a host with fewer CPUs runs the job on those it has.
  const std::string online = read_file("/sys/devices/system/cpu/online");
  std::string all, here;
  with_context("cpuset.cpus of the dumped cgroup", [&] {
    all = cpus_in_both(cgroup.cpuset_cpus(), cgroup.cpuset_cpus());
    here = cpus_in_both(all, online);
  });
  if (here.empty())
    fail("the dumped cgroup ran on CPUs {} (cpuset.cpus), none of which is online here (CPUs {}): restore it on a "
         "host that has one of them",
         cgroup.cpuset_cpus(), online.substr(0, online.find('\n')));
  if (here != all)
    log::warn("the dumped cgroup ran on CPUs {} (cpuset.cpus); only CPUs {} of them are online here: the job gets those",
              cgroup.cpuset_cpus(), here);
  config.set_cpuset(here);
}

}  // namespace stasis::restore
