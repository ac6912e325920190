// Cgroups v1 and v2: create "<parent>/<name>" in each hierarchy, apply limits, freeze, kill.
#include "common/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/magic.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "common/file_util.h"

namespace stasis {

namespace fs = std::filesystem;

namespace {

constexpr auto kFreezeTimeout = std::chrono::seconds(5);
constexpr auto kDestroyTimeout = std::chrono::seconds(5);

bool is_fs_type(const fs::path& path, long magic) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) return false;
  return static_cast<long>(st.f_type) == magic;
}

fs::path v2_root() {
  fs::path base = cgroup_fs_root();
  if (is_fs_type(base, CGROUP2_SUPER_MAGIC)) return base;
  return base / "unified";
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The v1 controllers a container gets, in a fixed order. cpuacct is separate from cpu on our
// hosts and gives the usage figures; it is optional.
struct V1Controller {
  const char* name;
  bool required;
};
constexpr V1Controller kV1Controllers[] = {
    {"memory", true}, {"cpu", true},     {"cpuacct", false}, {"pids", true},
    {"cpuset", true}, {"freezer", true}, {"devices", true},
};

std::vector<pid_t> read_pids(const fs::path& file) {
  std::vector<pid_t> out;
  std::istringstream in(read_file(file));
  pid_t pid;
  while (in >> pid) out.push_back(pid);
  return out;
}

// Removes what create() made so far when a later step fails.
struct CreatedDirs {
  std::vector<fs::path> dirs;
  std::vector<fs::path> parents;  // levels of the parent made here: removed if still empty
  bool committed = false;
  ~CreatedDirs() {
    if (committed) return;
    for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) ::rmdir(it->c_str());
    for (auto it = parents.rbegin(); it != parents.rend(); ++it) ::rmdir(it->c_str());
  }
};

// False when the parent is missing (ENOENT), for the caller to retry.
bool make_dir(const fs::path& dir, CreatedDirs& created, bool record) {
  if (::mkdir(dir.c_str(), 0755) == 0) {
    (record ? created.dirs : created.parents).push_back(dir);
    return true;
  }
  if (errno == EEXIST && !record) return true;
  if (errno == ENOENT) return false;
  if (errno == EEXIST) fail("cgroup {} already exists (a container of that name is left over? remove it)", dir.string());
  fail_errno(errno, "create cgroup {}", dir.string());
}

// cpuset needs cpus and mems before any process may join; copy them from the parent.
void inherit_cpuset(const fs::path& dir) {
  for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
    if (!trim(read_file(dir / file)).empty()) continue;
    std::string parent = trim(read_file(dir.parent_path() / file));
    write_file(dir / file, parent);
  }
}

void apply_v1_limits(const std::map<std::string, std::string>& paths, const CgroupLimits& limits,
                     const std::vector<std::string>& extra_devices) {
  auto at = [&](const char* controller) { return fs::path(paths.at(controller)); };
  if (!limits.cpuset.empty()) {
    inherit_cpuset(at("cpuset"));
    with_context("--cpuset " + limits.cpuset, [&] { write_file(at("cpuset") / "cpuset.cpus", limits.cpuset); });
  }
  if (limits.memory_max > 0) {
    write_file(at("memory") / "memory.limit_in_bytes", std::to_string(limits.memory_max));
    // Without this, swap (where there is any) would let the job grow past its limit.
    fs::path memsw = at("memory") / "memory.memsw.limit_in_bytes";
    if (fs::exists(memsw)) write_file(memsw, std::to_string(limits.memory_max));
  }
  if (limits.cpus > 0) {
    auto quota = static_cast<int64_t>(std::llround(limits.cpus * static_cast<double>(limits.cpu_period_us)));
    if (quota < 1000) quota = 1000;  // the kernel's minimum quota is 1 ms
    write_file(at("cpu") / "cpu.cfs_period_us", std::to_string(limits.cpu_period_us));
    write_file(at("cpu") / "cpu.cfs_quota_us", std::to_string(quota));
  }
  if (limits.pids_max > 0) write_file(at("pids") / "pids.max", std::to_string(limits.pids_max));

  // Devices: deny all, then allow the usual harmless set plus what the user asked for. The
  // kernel takes one rule per write(), so one open file serves them all.
  fs::path devices = at("devices");
  write_file(devices / "devices.deny", "a");
  fs::path allow_path = devices / "devices.allow";
  UniqueFd allow = open_or_throw(allow_path, O_WRONLY);
  auto allow_rule = [&](std::string_view rule) {
    if (::write(allow.get(), rule.data(), rule.size()) < 0) fail_errno(errno, "write '{}' to {}", rule, allow_path.string());
  };
  for (const char* rule : {"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
                           "c 5:2 rwm", "c 136:* rwm"}) {
    allow_rule(rule);
  }
  for (const auto& rule : extra_devices) {
    with_context("--device " + rule, [&] { allow_rule(device_rule(rule)); });
  }
}

// The root of the hierarchy that holds a controller's cgroups ("unified" for v2).
fs::path hierarchy_root(CgroupDriver driver, const std::string& controller) {
  return driver == CgroupDriver::V2 ? v2_root() : cgroup_fs_root() / controller;
}

// v2 controllers must be listed in the root's cgroup.controllers and enabled down to us.
void enable_v2_controller(const fs::path& root, const fs::path& dir, const std::string& controller,
                          const std::string& option) {
  std::string available = read_file(root / "cgroup.controllers");
  std::istringstream in(available);
  std::string word;
  bool found = false;
  while (in >> word) found = found || word == controller;
  if (!found) {
    fail("cgroup v2: controller '{}' is not enabled in {} (cgroup.controllers: '{}'), so {} cannot be applied",
         controller, root.string(), trim(available), option);
  }
  // In the root and every level of the parent, down to the container's own cgroup.
  fs::path level = root;
  write_file(level / "cgroup.subtree_control", "+" + controller);
  for (const auto& part : dir.parent_path().lexically_relative(root)) {
    level /= part;
    write_file(level / "cgroup.subtree_control", "+" + controller);
  }
}

void apply_v2_limits(const fs::path& root, const fs::path& dir, const CgroupLimits& limits) {
  if (limits.memory_max > 0) {
    enable_v2_controller(root, dir, "memory", "--memory");
    write_file(dir / "memory.max", std::to_string(limits.memory_max));
    if (fs::exists(dir / "memory.swap.max")) write_file(dir / "memory.swap.max", "0");
  }
  if (limits.cpus > 0) {
    enable_v2_controller(root, dir, "cpu", "--cpus");
    auto quota = static_cast<int64_t>(std::llround(limits.cpus * static_cast<double>(limits.cpu_period_us)));
    if (quota < 1000) quota = 1000;
    write_file(dir / "cpu.max", fmt::format("{} {}", quota, limits.cpu_period_us));
  }
  if (limits.pids_max > 0) {
    enable_v2_controller(root, dir, "pids", "--pids");
    write_file(dir / "pids.max", std::to_string(limits.pids_max));
  }
  if (!limits.cpuset.empty()) {
    enable_v2_controller(root, dir, "cpuset", "--cpuset");
    write_file(dir / "cpuset.cpus", limits.cpuset);
  }
}

std::string read_key(const fs::path& file, const std::string& key) {
  std::istringstream in(read_file(file));
  std::string k, v;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return "";
}

// What to add to a "not mounted" error: `ip netns exec` runs its command in a mount namespace
// of its own with /sys remounted for the network namespace, where /sys/fs/cgroup is an empty
// directory. nsenter --net changes the network namespace alone.
std::string not_mounted_hint(const fs::path& base) {
  std::error_code ec;
  if (!fs::is_directory(base, ec) || !fs::is_empty(base, ec)) return "";
  return fmt::format(
      ": {} is empty, as under `ip netns exec` (which remounts /sys for the network namespace and so "
      "hides the cgroup mounts); run `nsenter --net=/run/netns/NAME stasis ...` instead, which changes only "
      "the network namespace",
      base.string());
}

}  // namespace

fs::path cgroup_fs_root() {
  const char* env = std::getenv("STASIS_CGROUP_ROOT");
  return env && *env ? fs::path(env) : fs::path("/sys/fs/cgroup");
}

CgroupDriver detect_cgroup_driver() {
  fs::path base = cgroup_fs_root();
  if (is_fs_type(base, CGROUP2_SUPER_MAGIC)) return CgroupDriver::V2;
  if (is_fs_type(base / "freezer", CGROUP_SUPER_MAGIC)) return CgroupDriver::V1;
  if (is_fs_type(base / "unified", CGROUP2_SUPER_MAGIC)) return CgroupDriver::V2;
  fail("cgroups are not mounted under {} (neither v1 controllers nor a cgroup2 file system){}", base.string(),
       not_mounted_hint(base));
}

CgroupDriver parse_cgroup_driver(const std::string& name) {
  if (name == "auto" || name.empty()) return detect_cgroup_driver();
  if (name == "v1") return CgroupDriver::V1;
  if (name == "v2") return CgroupDriver::V2;
  throw UsageError(fmt::format("unknown cgroup driver '{}' (expected auto, v1 or v2)", name));
}

const char* cgroup_driver_name(CgroupDriver driver) { return driver == CgroupDriver::V1 ? "v1" : "v2"; }

std::string device_rule(const std::string& spec) {
  // Either a rule as the devices controller takes it ("c 10:200 rwm") or a device path.
  if (spec.size() > 2 && (spec[0] == 'c' || spec[0] == 'b' || spec[0] == 'a') && spec[1] == ' ') {
    return spec.find(' ', 2) == std::string::npos ? spec + " rwm" : spec;
  }
  struct stat st {};
  if (::stat(spec.c_str(), &st) != 0) fail_errno(errno, "device {}", spec);
  if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) fail("{} is not a device node", spec);
  return fmt::format("{} {}:{} rwm", S_ISCHR(st.st_mode) ? 'c' : 'b', major(st.st_rdev), minor(st.st_rdev));
}

std::string normalize_cgroup_parent(const std::string& parent) {
  std::string out;
  std::string_view rest = parent;
  while (!rest.empty()) {
    size_t slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (part.empty()) continue;
    if (part == "." || part == "..")
      throw UsageError(fmt::format("--cgroup-parent '{}': '.' and '..' are not allowed", parent));
    if (!out.empty()) out += '/';
    out += part;
  }
  if (out.empty()) throw UsageError(fmt::format("--cgroup-parent '{}': expected a cgroup path such as 'stasis-host2'", parent));
  return out;
}

std::map<std::string, std::string> Cgroup::plan(CgroupDriver driver, const std::string& name,
                                                const CgroupLimits& limits) {
  return plan(driver, kDefaultCgroupParent, name, limits);
}

std::map<std::string, std::string> Cgroup::plan(CgroupDriver driver, const std::string& parent_path,
                                                const std::string& name, const CgroupLimits& limits) {
  const std::string parent = normalize_cgroup_parent(parent_path);
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    fail("invalid cgroup name '{}'", name);
  }
  std::map<std::string, std::string> paths;
  if (driver == CgroupDriver::V1) {
    fs::path base = cgroup_fs_root();
    for (const auto& c : kV1Controllers) {
      // cpu (with cpuacct) and cpuset only for their limits: each hierarchy costs a
      // directory of control files to make and remove, a good part of a `stasis run`.
      const std::string_view controller = c.name;
      if ((controller == "cpu" || controller == "cpuacct") && limits.cpus <= 0) continue;
      if (controller == "cpuset" && limits.cpuset.empty()) continue;
      fs::path hierarchy = base / c.name;
      if (!is_fs_type(hierarchy, CGROUP_SUPER_MAGIC)) {
        if (!c.required) continue;
        fail("cgroup v1 controller '{}' is not mounted at {}{}", c.name, hierarchy.string(), not_mounted_hint(base));
      }
      paths[c.name] = (hierarchy / parent / name).string();
    }
  } else {
    fs::path root = v2_root();
    if (!is_fs_type(root, CGROUP2_SUPER_MAGIC))
      fail("cgroup v2 is not mounted at {}{}", root.string(), not_mounted_hint(cgroup_fs_root()));
    paths["unified"] = (root / parent / name).string();
  }
  return paths;
}

Cgroup Cgroup::create(CgroupDriver driver, const std::string& name, const CgroupLimits& limits,
                      const std::vector<std::string>& extra_devices) {
  return create(driver, plan(driver, name, limits), limits, extra_devices);
}

Cgroup Cgroup::create(CgroupDriver driver, const std::map<std::string, std::string>& planned,
                      const CgroupLimits& limits, const std::vector<std::string>& extra_devices) {
  if (driver == CgroupDriver::V2 && !extra_devices.empty()) {
    throw UsageError("--device needs the cgroup v1 devices controller (use --cgroup-driver v1)");
  }
  CreatedDirs created;
  for (const auto& [controller, path] : planned) {
    fs::path dir = path;
    // The parent ("stasis", or the --cgroup-parent) is shared by all containers; never removed
    // by us. Made level by level, each cpuset level given its parent's CPUs and memory nodes.
    // A parent of ours ("stasis-<hash>") may be removed between the two steps by the last
    // container of its root going away (destroy): then it is made again.
    const fs::path hierarchy = hierarchy_root(driver, controller);
    for (int attempt = 0;; ++attempt) {
      fs::path level = hierarchy;
      bool parents = true;
      for (const auto& part : dir.parent_path().lexically_relative(hierarchy)) {
        level /= part;
        if (!(parents = make_dir(level, created, false))) break;
        if (controller == "cpuset") inherit_cpuset(level);
      }
      if (parents && make_dir(dir, created, true)) break;
      if (attempt == 3) fail_errno(ENOENT, "create cgroup {}", dir.string());
    }
  }
  if (driver == CgroupDriver::V1) {
    apply_v1_limits(planned, limits, extra_devices);
  } else {
    apply_v2_limits(hierarchy_root(driver, "unified"), planned.at("unified"), limits);
  }
  created.committed = true;
  return Cgroup(driver, planned);
}

Cgroup Cgroup::open(CgroupDriver driver, std::map<std::string, std::string> paths) {
  if (paths.empty()) fail("no cgroup paths recorded");
  // Not "missing" (a container's cgroup may be gone, and rm copes) but hidden from us.
  if (std::string hint = not_mounted_hint(cgroup_fs_root()); !hint.empty())
    fail("cannot reach the cgroup {}{}", paths.begin()->second, hint);
  return Cgroup(driver, std::move(paths));
}

void Cgroup::add_process(pid_t pid) const {
  for (const auto& [controller, path] : paths_) {
    with_context(fmt::format("add pid {} to cgroup {}", pid, path),
                 [&] { write_file(fs::path(path) / "cgroup.procs", std::to_string(pid)); });
  }
}

void Cgroup::join_self() const {
  if (driver_ == CgroupDriver::V2) return add_process(::getpid());
  for (const auto& [controller, path] : paths_) {
    with_context(fmt::format("join cgroup {} (pid {})", path, ::getpid()),
                 [&] { write_file(fs::path(path) / "tasks", "0"); });
  }
}

std::vector<pid_t> Cgroup::processes() const {
  // freezer (v1) or the unified cgroup sees every process of the container.
  const std::string& path = paths_.count("freezer") ? paths_.at("freezer") : paths_.begin()->second;
  return read_pids(fs::path(path) / "cgroup.procs");
}

std::vector<pid_t> Cgroup::threads() const {
  if (driver_ == CgroupDriver::V1) {
    const std::string& path = paths_.count("freezer") ? paths_.at("freezer") : paths_.begin()->second;
    return read_pids(fs::path(path) / "tasks");
  }
  return read_pids(fs::path(paths_.at("unified")) / "cgroup.threads");
}

void Cgroup::freeze() const {
  auto deadline = std::chrono::steady_clock::now() + kFreezeTimeout;
  if (driver_ == CgroupDriver::V1) {
    fs::path state = fs::path(paths_.at("freezer")) / "freezer.state";
    write_file(state, "FROZEN");
    while (trim(read_file(state)) != "FROZEN") {
      if (std::chrono::steady_clock::now() > deadline) {
        fail("freeze {}: still '{}' after 5 s", state.string(), trim(read_file(state)));
      }
      // Re-writing FROZEN retries tasks that were busy in the kernel.
      write_file(state, "FROZEN");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return;
  }
  fs::path dir = paths_.at("unified");
  write_file(dir / "cgroup.freeze", "1");
  while (read_key(dir / "cgroup.events", "frozen") != "1") {
    if (std::chrono::steady_clock::now() > deadline) fail("freeze {}: not frozen after 5 s", dir.string());
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void Cgroup::thaw() const {
  if (driver_ == CgroupDriver::V1) {
    write_file(fs::path(paths_.at("freezer")) / "freezer.state", "THAWED");
  } else {
    write_file(fs::path(paths_.at("unified")) / "cgroup.freeze", "0");
  }
}

bool Cgroup::frozen() const {
  if (driver_ == CgroupDriver::V1) {
    return trim(read_file(fs::path(paths_.at("freezer")) / "freezer.state")) == "FROZEN";
  }
  return read_key(fs::path(paths_.at("unified")) / "cgroup.events", "frozen") == "1";
}

void Cgroup::kill_all() const {
  if (driver_ == CgroupDriver::V2 && fs::exists(fs::path(paths_.at("unified")) / "cgroup.kill")) {
    write_file(fs::path(paths_.at("unified")) / "cgroup.kill", "1");
    return;
  }
  // v1: SIGKILL is only delivered once the task runs, so thaw as well.
  auto deadline = std::chrono::steady_clock::now() + kDestroyTimeout;
  for (;;) {
    std::vector<pid_t> pids = processes();
    if (pids.empty()) return;
    for (pid_t pid : pids) ::kill(pid, SIGKILL);
    if (driver_ == CgroupDriver::V1) thaw();
    if (std::chrono::steady_clock::now() > deadline) {
      fail("kill every process of cgroup {}: {} still there after 5 s", paths_.begin()->second, pids.size());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void Cgroup::destroy() const {
  auto deadline = std::chrono::steady_clock::now() + kDestroyTimeout;
  for (const auto& [controller, path] : paths_) {
    for (;;) {
      if (::rmdir(path.c_str()) == 0 || errno == ENOENT) break;
      // EBUSY while exiting tasks (zombies not yet reaped) still count as members.
      if (errno != EBUSY || std::chrono::steady_clock::now() > deadline) {
        fail_errno(errno, "remove cgroup {}", path);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    // The parent made for a state root of its own ("stasis-<hash>") goes with its last
    // container (EBUSY or ENOTEMPTY while others remain): test roots would pile them up.
    fs::path parent = fs::path(path).parent_path();
    if (parent.filename().string().rfind(std::string(kDefaultCgroupParent) + "-", 0) == 0) ::rmdir(parent.c_str());
  }
}

CgroupFreeze::CgroupFreeze(const Cgroup& cgroup) : cgroup_(cgroup) { cgroup_.freeze(); }

CgroupFreeze::~CgroupFreeze() {
  if (!active_) return;
  try {
    cgroup_.thaw();
  } catch (const Error&) {
    // Destructors must not throw; the cgroup may be gone already.
  }
}

}  // namespace stasis
