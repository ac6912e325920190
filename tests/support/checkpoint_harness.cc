#include "tests/support/checkpoint_harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace stasis::test {

namespace fs = std::filesystem;

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

namespace {

std::string describe(const CommandResult& r) {
  std::string s = "exit " + std::to_string(r.exit_code);
  if (r.exit_code == 3) s += " (not implemented)";
  if (!r.out.empty()) s += "\nstdout: " + r.out;
  if (!r.err.empty()) s += "\nstderr: " + r.err;
  return s;
}

// --- A small JSON reader, enough for `stasis ps --json` whatever its exact layout. ---
struct Json {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject } type = Type::kNull;
  std::string text;  // string contents, number text, "true"/"false"
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  const Json* member(const std::string& key) const {
    for (const auto& [k, v] : members)
      if (k == key) return &v;
    return nullptr;
  }
};

class JsonReader {
 public:
  explicit JsonReader(const std::string& s) : s_(s) {}

  // Reads every top-level value (an array, an object, or one object per line).
  bool read_all(std::vector<Json>& out) {
    for (;;) {
      skip_space();
      if (i_ >= s_.size()) return true;
      Json v;
      if (!value(v)) return false;
      out.push_back(std::move(v));
    }
  }

 private:
  void skip_space() {
    while (i_ < s_.size() && isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool literal(const char* word) {
    size_t n = strlen(word);
    if (s_.compare(i_, n, word) != 0) return false;
    i_ += n;
    return true;
  }
  bool string(std::string& out) {
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    ++i_;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) return false;
      char e = s_[i_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u':
          if (i_ + 4 > s_.size()) return false;
          out += '?';  // not needed for names and numbers
          i_ += 4;
          break;
        default: out += e;
      }
    }
    if (i_ >= s_.size()) return false;
    ++i_;
    return true;
  }
  bool value(Json& v) {
    skip_space();
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    if (c == '{') {
      v.type = Json::Type::kObject;
      ++i_;
      skip_space();
      if (i_ < s_.size() && s_[i_] == '}') return ++i_, true;
      for (;;) {
        skip_space();
        std::string key;
        if (!string(key)) return false;
        skip_space();
        if (i_ >= s_.size() || s_[i_] != ':') return false;
        ++i_;
        Json member;
        if (!value(member)) return false;
        v.members.emplace_back(std::move(key), std::move(member));
        skip_space();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == '}') return ++i_, true;
        return false;
      }
    }
    if (c == '[') {
      v.type = Json::Type::kArray;
      ++i_;
      skip_space();
      if (i_ < s_.size() && s_[i_] == ']') return ++i_, true;
      for (;;) {
        Json item;
        if (!value(item)) return false;
        v.items.push_back(std::move(item));
        skip_space();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == ']') return ++i_, true;
        return false;
      }
    }
    if (c == '"') {
      v.type = Json::Type::kString;
      return string(v.text);
    }
    if (literal("true")) return v.type = Json::Type::kBool, v.text = "true", true;
    if (literal("false")) return v.type = Json::Type::kBool, v.text = "false", true;
    if (literal("null")) return v.type = Json::Type::kNull, true;
    size_t start = i_;
    while (i_ < s_.size() && (isdigit(static_cast<unsigned char>(s_[i_])) || strchr("+-.eE", s_[i_]))) ++i_;
    if (i_ == start) return false;
    v.type = Json::Type::kNumber;
    v.text = s_.substr(start, i_ - start);
    return true;
  }

  const std::string& s_;
  size_t i_ = 0;
};

struct PsEntry {
  std::optional<pid_t> pid;
  std::string status;
  std::vector<std::pair<std::string, std::string>> cgroups;  // controller -> path
};

std::optional<long long> as_integer(const Json& v) {
  if (v.type != Json::Type::kNumber && v.type != Json::Type::kString) return std::nullopt;
  if (v.text.empty()) return std::nullopt;
  char* end = nullptr;
  long long n = strtoll(v.text.c_str(), &end, 10);
  if (!end || *end) return std::nullopt;
  return n;
}

// Finds the object whose "name" is `name` (at any depth) and looks for the PID and status in
// it and then in the objects around it (ContainerState keeps the name inside "config").
bool find_entry(const Json& v, const std::string& name, std::vector<const Json*>& outer, PsEntry& entry) {
  if (v.type == Json::Type::kObject) {
    const Json* n = v.member("name");
    if (n && n->type == Json::Type::kString && n->text == name) {
      std::vector<const Json*> scopes{&v};
      scopes.insert(scopes.end(), outer.rbegin(), outer.rend());
      for (const Json* scope : scopes) {
        for (const char* key : {"init_pid", "initPid", "host_pid", "hostPid", "pid"}) {
          const Json* p = scope->member(key);
          if (!entry.pid && p) {
            if (auto value = as_integer(*p); value && *value > 0) entry.pid = static_cast<pid_t>(*value);
          }
        }
        for (const char* key : {"cgroup_paths", "cgroupPaths"}) {
          const Json* g = scope->member(key);
          if (entry.cgroups.empty() && g && g->type == Json::Type::kObject)
            for (const auto& [controller, path] : g->members) entry.cgroups.emplace_back(controller, path.text);
        }
        for (const char* key : {"status", "state"}) {
          const Json* s = scope->member(key);
          if (entry.status.empty() && s && s->type == Json::Type::kString) entry.status = s->text;
        }
      }
      return true;
    }
    outer.push_back(&v);
    for (const auto& [k, m] : v.members)
      if (find_entry(m, name, outer, entry)) return outer.pop_back(), true;
    outer.pop_back();
  } else if (v.type == Json::Type::kArray) {
    for (const auto& item : v.items)
      if (find_entry(item, name, outer, entry)) return true;
  }
  return false;
}

// Figures for the log: how long a dump or restore command took.
void print_timing(const char* what, const std::string& name, std::chrono::steady_clock::time_point t0) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  fprintf(stderr, "[   time   ] %s %s: %lld ms\n", what, name.c_str(), static_cast<long long>(ms));
}

// Field 22 of /proc/PID/stat: the start time, to tell a PID from its reuse.
unsigned long long start_time(pid_t pid) {
  std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream in(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && in >> field; ++i)
    if (i == 22) return std::stoull(field);
  return 0;
}

}  // namespace

// --- status files ---

WorkloadStatus read_status(const fs::path& path) {
  WorkloadStatus st;
  st.raw = read_text(path);
  // A status is complete only with its newline (the bash workload rewrites in place).
  if (st.raw.empty() || st.raw.back() != '\n') return st;
  std::string line = st.raw.substr(0, st.raw.find('\n'));
  if (line.rfind("ok ", 0) == 0) {
    char* end = nullptr;
    unsigned long long p = strtoull(line.c_str() + 3, &end, 10);
    if (end && *end == 0 && end != line.c_str() + 3) {
      st.kind = WorkloadStatus::Kind::kOk;
      st.progress = p;
    }
  } else if (line.rfind("FAIL", 0) == 0) {
    st.kind = WorkloadStatus::Kind::kFail;
    st.reason = line.size() > 5 ? line.substr(5) : "(no reason given)";
  }
  return st;
}

void clear_status(const fs::path& path) {
  // Truncate, not unlink: the bash workload writes the status file in place, so an image
  // may hold it open and a restore reopens it by name.
  int fd = open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd >= 0) close(fd);
}

std::vector<std::string> accept_rewritten_status(const fs::path& status) {
  return {"--allow-changed-file", status.string() + ".tmp", "--allow-changed-file", status.string()};
}

std::vector<std::string> Workload::argv(const fs::path& status) const {
  std::vector<std::string> v = program;
  v.push_back(status.string());
  v.insert(v.end(), args.begin(), args.end());
  return v;
}

Workload c_workload(const std::string& name, std::vector<std::string> args) {
  Workload w;
  w.name = name;
  w.program = {workload(name)};
  w.args = std::move(args);
  return w;
}

Workload python_workload() {
  Workload w;
  w.name = "py_counter";
  w.program = {"/usr/bin/python3", std::string(STASIS_SOURCE_DIR) + "/tests/workloads/py_counter.py"};
  w.start_timeout = 30s;
  return w;
}

Workload bash_workload() {
  Workload w;
  w.name = "bash_loop";
  w.program = {"/bin/bash", std::string(STASIS_SOURCE_DIR) + "/tests/workloads/bash_loop.sh"};
  return w;
}

::testing::AssertionResult wait_for_progress(const fs::path& status, std::uint64_t beyond,
                                             std::chrono::milliseconds timeout, std::uint64_t* progress,
                                             std::uint64_t at_least) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  WorkloadStatus st;
  for (;;) {
    st = read_status(status);
    if (st.kind == WorkloadStatus::Kind::kFail)
      return ::testing::AssertionFailure() << "workload reported FAIL: " << st.reason << " (" << status << ")";
    if (st.kind == WorkloadStatus::Kind::kOk) {
      if (st.progress < at_least)
        return ::testing::AssertionFailure() << "workload progress restarted: ok " << st.progress
                                             << " after reaching " << at_least << " (" << status << ")";
      if (st.progress > beyond) {
        if (progress) *progress = st.progress;
        return ::testing::AssertionSuccess();
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(20ms);
  }
  return ::testing::AssertionFailure() << "no progress beyond " << beyond << " within " << timeout.count()
                                       << " ms; status file " << status << " says '" << st.raw << "'";
}

::testing::AssertionResult keep_progressing(const fs::path& status, std::chrono::milliseconds duration,
                                            std::uint64_t* progress) {
  std::uint64_t first = 0;
  auto r = wait_for_progress(status, 0, 5s, &first);
  if (!r) return r;
  std::uint64_t last = first;
  auto end = std::chrono::steady_clock::now() + duration;
  while (std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(50ms);
    WorkloadStatus st = read_status(status);
    if (st.kind == WorkloadStatus::Kind::kFail)
      return ::testing::AssertionFailure() << "workload reported FAIL: " << st.reason << " (" << status << ")";
    if (st.kind != WorkloadStatus::Kind::kOk) continue;
    if (st.progress < last)
      return ::testing::AssertionFailure() << "progress went backwards: " << st.progress << " after " << last;
    last = st.progress;
  }
  if (progress) *progress = last;
  if (last == first)
    return ::testing::AssertionFailure() << "no progress for " << duration.count() << " ms (stuck at " << last << ")";
  return ::testing::AssertionSuccess();
}

// --- processes ---

std::vector<pid_t> namespace_pids(pid_t host_pid) {
  std::istringstream in(read_text("/proc/" + std::to_string(host_pid) + "/status"));
  std::string line;
  std::vector<pid_t> pids;
  while (std::getline(in, line)) {
    if (line.rfind("NSpid:", 0) != 0) continue;
    std::istringstream fields(line.substr(6));
    long long v = -1;
    while (fields >> v) pids.push_back(static_cast<pid_t>(v));
  }
  return pids;
}

std::optional<pid_t> namespace_pid(pid_t host_pid) {
  auto pids = namespace_pids(host_pid);
  if (pids.empty()) return std::nullopt;
  return pids.back();
}

std::string namespace_id(pid_t pid, const std::string& kind) {
  std::error_code ec;
  auto link = fs::read_symlink("/proc/" + std::to_string(pid) + "/ns/" + kind, ec);
  return ec ? std::string() : link.string();
}

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  char state = stat[close + 2];
  return state != 'Z' && state != 'X';
}

long long context_switches(pid_t pid) {
  std::error_code ec;
  fs::path tasks = "/proc/" + std::to_string(pid) + "/task";
  long long total = 0;
  bool any = false;
  for (const auto& t : fs::directory_iterator(tasks, ec)) {
    std::istringstream in(read_text(t.path() / "status"));
    std::string line;
    while (std::getline(in, line)) {
      if (line.find("ctxt_switches:") == std::string::npos) continue;
      total += std::atoll(line.substr(line.find(':') + 1).c_str());
      any = true;
    }
  }
  return any ? total : -1;
}

// --- CheckpointEnv ---

CheckpointEnv::CheckpointEnv() = default;

fs::path CheckpointEnv::status_path(const std::string& label) const { return work() / (label + ".status"); }

fs::path CheckpointEnv::image_dir(const std::string& label) const {
  fs::path dir = work() / ("images-" + label);
  fs::create_directories(dir);
  return dir;
}

CommandResult CheckpointEnv::stasis(const std::vector<std::string>& args, std::chrono::milliseconds timeout) const {
  std::vector<std::string> all{"--root", root().string()};
  all.insert(all.end(), args.begin(), args.end());
  return run_stasis(all, timeout);
}

pid_t CheckpointEnv::start_paused(const std::vector<std::string>& args, const std::string& fault,
                                  const fs::path& pause, const fs::path& log) const {
  std::vector<std::string> argv{stasis_binary(), "--root", root().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> raw;
  for (auto& a : argv) raw.push_back(a.data());
  raw.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("STASIS_FAULT", fault.c_str(), 1);
    ::setenv("STASIS_FAULT_PAUSE", pause.c_str(), 1);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) ::dup2(fd, 1), ::dup2(fd, 2);
    ::execv(raw[0], raw.data());
    ::_exit(127);
  }
  return pid;
}

::testing::AssertionResult CheckpointEnv::dump_pid(pid_t pid, const fs::path& dir,
                                                  const std::vector<std::string>& options,
                                                  std::chrono::milliseconds timeout) const {
  std::vector<std::string> args{"dump", "--pid", std::to_string(pid), "-D", dir.string()};
  args.insert(args.end(), options.begin(), options.end());
  auto t0 = std::chrono::steady_clock::now();
  CommandResult r = stasis(args, timeout);
  print_timing("dump --pid", std::to_string(pid), t0);
  if (r.exit_code != 0)
    return ::testing::AssertionFailure() << "stasis " << join(args) << " failed: " << describe(r);
  return ::testing::AssertionSuccess();
}

std::string CheckpointEnv::unique_name(const std::string& base) {
  std::string clean;
  for (char c : base) clean += isalnum(static_cast<unsigned char>(c)) || c == '-' ? c : '-';
  return clean + "-" + std::to_string(getpid()) + "-" + std::to_string(next_++);
}

// --- Container ---

Container::Container(CheckpointEnv& env, const std::string& base_name)
    : env_(env), name_(env.unique_name(base_name)) {}

Container::~Container() { remove(); }

::testing::AssertionResult Container::run(const Workload& w, const std::vector<std::string>& options) {
  status_ = env_.status_path(name_);
  std::vector<std::string> args{"run", "-d", "--name", name_};
  args.insert(args.end(), options.begin(), options.end());
  args.push_back("--");
  auto argv = w.argv(status_);
  args.insert(args.end(), argv.begin(), argv.end());
  started_ = true;
  CommandResult r = env_.stasis(args, 30s);
  last_output_ = r.out + r.err;
  if (r.exit_code != 0)
    return ::testing::AssertionFailure() << "stasis " << join(args) << " failed: " << describe(r);
  host_pid();  // remember the PID for cleanup
  auto ok = wait_for_progress(status_, 0, w.start_timeout);
  if (!ok) return ok << " (container " << name_ << ", workload " << w.name << ")";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Container::dump(const fs::path& dir, const std::vector<std::string>& options,
                                           std::chrono::milliseconds timeout) {
  std::vector<std::string> args{"dump", name_, "-D", dir.string()};
  args.insert(args.end(), options.begin(), options.end());
  auto t0 = std::chrono::steady_clock::now();
  CommandResult r = env_.stasis(args, timeout);
  last_output_ = r.out + r.err;
  print_timing("dump", name_, t0);
  if (r.exit_code != 0)
    return ::testing::AssertionFailure() << "stasis " << join(args) << " failed: " << describe(r);
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Container::restore(const fs::path& dir, const fs::path& status,
                                              const std::vector<std::string>& options,
                                              std::chrono::milliseconds timeout) {
  status_ = status;
  std::vector<std::string> args{"restore", "-D", dir.string(), "--name", name_, "-d"};
  args.insert(args.end(), options.begin(), options.end());
  // The workload rewrites its status file all the time (the original after --leave-running,
  // or a copy restored before): a dump that caught it open must not fail the restores of
  // tests about something else. Tests of changed files use files of their own.
  if (std::find(options.begin(), options.end(), "--allow-changed-file") == options.end())
    for (const auto& a : accept_rewritten_status(status)) args.push_back(a);
  started_ = true;
  auto t0 = std::chrono::steady_clock::now();
  CommandResult r = env_.stasis(args, timeout);
  last_output_ = r.out + r.err;
  print_timing("restore", name_, t0);
  host_pid();
  if (r.exit_code != 0)
    return ::testing::AssertionFailure() << "stasis " << join(args) << " failed: " << describe(r);
  return ::testing::AssertionSuccess();
}

namespace {
std::optional<PsEntry> ps_entry(const CheckpointEnv& env, const std::string& name) {
  CommandResult r = env.stasis({"ps", "-a", "--json"}, 20s);
  if (r.exit_code != 0) return std::nullopt;
  std::vector<Json> values;
  JsonReader reader(r.out);
  if (!reader.read_all(values)) return std::nullopt;
  PsEntry entry;
  std::vector<const Json*> outer;
  for (const auto& v : values)
    if (find_entry(v, name, outer, entry)) return entry;
  return std::nullopt;
}
}  // namespace

std::optional<std::string> Container::cgroup_path(const std::string& controller) {
  auto entry = ps_entry(env_, name_);
  if (!entry) return std::nullopt;
  for (const auto& [c, path] : entry->cgroups)
    if (c == controller) return path;
  return std::nullopt;
}

std::optional<pid_t> Container::host_pid() {
  auto found = ps_entry(env_, name_);
  if (!found) return std::nullopt;
  const PsEntry& entry = *found;
  // An exited container may keep its old init_pid, which the kernel can hand out again.
  if (entry.status == "exited") return std::nullopt;
  if (!entry.pid || !process_alive(*entry.pid)) return std::nullopt;
  if (*entry.pid != pid_) {
    pid_ = *entry.pid;
    start_time_ = start_time(pid_);
  }
  return entry.pid;
}

::testing::AssertionResult Container::wait_gone(std::chrono::milliseconds timeout) {
  bool gone = wait_until(
      [&] {
        if (pid_ > 0 && process_alive(pid_) && start_time(pid_) == start_time_) return false;
        return !host_pid().has_value();
      },
      timeout);
  if (gone) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "container " << name_ << " (host pid " << pid_ << ") still runs after "
                                       << timeout.count() << " ms";
}

namespace {

// PIDs of processes whose command line contains `needle` (our status paths are unique to
// one test: they hold the work folder's random name).
std::vector<pid_t> pids_with_argument(const std::string& needle) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid == getpid()) continue;
    std::string cmdline = read_text(e.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(needle) != std::string::npos) pids.push_back(pid);
  }
  return pids;
}

}  // namespace

void Container::remove() {
  if (!started_) return;
  started_ = false;
  env_.stasis({"rm", "-f", name_}, 30s);
  // Whatever rm left behind: kill the PID we saw, if it is still that process.
  if (pid_ > 0 && process_alive(pid_) && start_time(pid_) == start_time_) {
    ::kill(pid_, SIGKILL);
    wait_until([&] { return !process_alive(pid_); }, 10s);
  }
  // A run or restore that failed half way may have left a monitor and the workload with no
  // PID in the state: they carry our unique status path (or container name) on their
  // command line.
  if (!status_.empty()) {
    for (const std::string& needle : {status_.string(), " " + name_ + " "}) {
      std::vector<pid_t> left = pids_with_argument(needle);
      for (pid_t p : left) ::kill(p, SIGKILL);
      for (pid_t p : left) wait_until([&] { return !process_alive(p); }, 5s);
    }
  }
  // The status files stay (the work folder goes at the end of the test): an image may hold
  // the workload's .tmp file open, and a restore reopens it by name.
}

// --- HostProcess ---

HostProcess::~HostProcess() { kill(); }

::testing::AssertionResult HostProcess::start(const Workload& w, const fs::path& status,
                                              std::chrono::milliseconds first_ok_timeout) {
  status_ = status;
  log_ = status.string() + ".log";
  std::vector<std::string> argv = w.argv(status);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  int log_fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) return ::testing::AssertionFailure() << "open " << log_ << ": " << strerror(errno);
  pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return ::testing::AssertionFailure() << "fork: " << strerror(errno);
  }
  if (pid == 0) {
    // Its own session and a clean fd table (0, 1, 2 only): what a checkpoint sees.
    setsid();
    int null_fd = open("/dev/null", O_RDONLY);
    dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    close_range(3, ~0U, 0);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  close(log_fd);
  pid_ = pid;
  reaped_ = false;
  auto ok = wait_for_progress(status_, 0, first_ok_timeout);
  if (!ok) return ok << " (host process " << pid_ << ", log: " << log_tail() << ")";
  return ::testing::AssertionSuccess();
}

bool HostProcess::running() {
  if (reaped_) return false;
  int st;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) {
    reaped_ = true;
    return false;
  }
  return true;
}

bool HostProcess::wait_exit(std::chrono::milliseconds timeout) {
  return wait_until([&] { return !running(); }, timeout);
}

void HostProcess::kill() {
  if (reaped_) return;
  ::kill(pid_, SIGKILL);
  int st;
  waitpid(pid_, &st, 0);
  reaped_ = true;
}

std::string HostProcess::log_tail() const {
  std::string text = read_text(log_);
  if (text.size() > 2000) text = "..." + text.substr(text.size() - 2000);
  return text;
}

// --- the common scenario ---

void check_round_trip(const Workload& w, const RoundTrip& how) {
  CheckpointEnv env;
  Container original(env, w.name);
  ASSERT_TRUE(original.run(w, how.run_options));
  std::uint64_t n = 0;
  // Running, not only started.
  ASSERT_TRUE(wait_for_progress(original.status(), 0, w.start_timeout, &n));
  ASSERT_TRUE(wait_for_progress(original.status(), n, 10s, &n));
  std::optional<pid_t> original_pid = original.host_pid();
  ASSERT_TRUE(original_pid.has_value()) << "stasis ps --json does not show container " << original.name()
                                        << " with a live PID";
  std::optional<pid_t> original_nspid = namespace_pid(*original_pid);
  // Which namespaces the container has of its own: the restored one must have them too.
  const std::vector<std::string> kinds{"pid", "uts", "ipc", "mnt", "net"};
  std::vector<std::string> own;
  for (const auto& k : kinds)
    if (namespace_id(*original_pid, k) != namespace_id(getpid(), k)) own.push_back(k);

  if (how.before_dump) how.before_dump(original);
  fs::path images = env.image_dir("dump");
  std::vector<std::string> dump_options = how.dump_options;
  if (how.leave_running) dump_options.push_back("--leave-running");
  ASSERT_TRUE(original.dump(images, dump_options));
  if (how.leave_running) {
    std::uint64_t after = 0;
    ASSERT_TRUE(wait_for_progress(original.status(), n, 10s, &after))
        << "the original must keep running after dump --leave-running";
    original.remove();
    EXPECT_FALSE(process_alive(*original_pid)) << "rm -f left pid " << *original_pid;
  } else {
    ASSERT_TRUE(original.wait_gone()) << "dump without --leave-running must stop the original";
    WorkloadStatus last = read_status(original.status());
    ASSERT_NE(last.kind, WorkloadStatus::Kind::kFail) << "the original reported FAIL: " << last.reason;
    if (last.kind == WorkloadStatus::Kind::kOk) n = std::max(n, last.progress);
  }
  // From here on every status line comes from the restored process.
  clear_status(original.status());

  Container restored(env, w.name + "-restored");
  // The status files may have changed since the dump whatever the image holds open of them:
  // rewritten by the original left running, and truncated just above.
  std::vector<std::string> restore_options = how.restore_options;
  auto accept = accept_rewritten_status(original.status());
  restore_options.insert(restore_options.end(), accept.begin(), accept.end());
  ASSERT_TRUE(restored.restore(images, original.status(), restore_options));
  std::uint64_t p = 0;
  ASSERT_TRUE(wait_for_progress(restored.status(), n, 30s, &p, n)) << "after restore of " << w.name;
  ASSERT_TRUE(keep_progressing(restored.status(), w.watch, &p)) << "after restore of " << w.name;
  std::optional<pid_t> restored_pid = restored.host_pid();
  ASSERT_TRUE(restored_pid.has_value()) << "stasis ps --json does not show the restored " << restored.name();
  EXPECT_EQ(namespace_pid(*restored_pid), original_nspid) << "PID inside the container's namespace changed";
  for (const auto& k : own) {
    std::string ns = namespace_id(*restored_pid, k);
    EXPECT_FALSE(ns.empty()) << k;
    EXPECT_NE(ns, namespace_id(getpid(), k)) << "the restored container shares the host's " << k << " namespace";
  }
  if (how.after_restore) how.after_restore(restored);
}

void check_generations(const Workload& w, int generations) {
  CheckpointEnv env;
  std::vector<std::unique_ptr<Container>> copies;
  copies.push_back(std::make_unique<Container>(env, w.name + "-gen1"));
  ASSERT_TRUE(copies.back()->run(w));
  const fs::path status = copies.back()->status();
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(status, 0, 10s, &n));
  for (int g = 1; g <= generations; ++g) {
    const std::string images = "gen" + std::to_string(g);
    ASSERT_TRUE(copies.back()->dump(env.image_dir(images))) << "dump of generation " << g;
    ASSERT_TRUE(copies.back()->wait_gone());
    n = std::max(n, read_status(status).progress);
    clear_status(status);
    copies.push_back(std::make_unique<Container>(env, w.name + "-gen" + std::to_string(g + 1)));
    ASSERT_TRUE(copies.back()->restore(env.image_dir(images), status));
    ASSERT_TRUE(wait_for_progress(status, n, 30s, &n, n)) << "restore of generation " << g;
    if (g < generations) {
      ASSERT_TRUE(wait_for_progress(status, n, 10s, &n));
    }
  }
  ASSERT_TRUE(keep_progressing(status, 1000ms));
}

void check_repeated_dumps(const Workload& w, int dumps) {
  CheckpointEnv env;
  Container original(env, w.name);
  ASSERT_TRUE(original.run(w));
  std::vector<std::uint64_t> before(static_cast<size_t>(dumps));
  for (int i = 0; i < dumps; ++i) {
    std::uint64_t n = 0;
    ASSERT_TRUE(wait_for_progress(original.status(), 0, 10s, &n));
    before[static_cast<size_t>(i)] = n;
    ASSERT_TRUE(original.dump(env.image_dir(std::to_string(i)), {"--leave-running"}));
    ASSERT_TRUE(wait_for_progress(original.status(), n, 10s)) << "the original stopped after dump " << i;
  }
  const fs::path status = original.status();
  original.remove();
  for (int i = 0; i < dumps; ++i) {
    clear_status(status);
    Container restored(env, w.name + "-restored");
    ASSERT_TRUE(restored.restore(env.image_dir(std::to_string(i)), status, accept_rewritten_status(status)));
    std::uint64_t n = before[static_cast<size_t>(i)];
    ASSERT_TRUE(wait_for_progress(status, n, 30s, &n, n)) << "restore of dump " << i;
    ASSERT_TRUE(keep_progressing(status, w.watch)) << "restore of dump " << i;
  }
}

}  // namespace stasis::test
