// /proc parsers. Strict: a line we do not understand is an error naming the file and line,
// because a silently misread mapping or pid would corrupt a checkpoint.
#include "common/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cerrno>

#include "common/error.h"
#include "common/fd.h"
#include "common/file_util.h"

namespace stasis::proc {

namespace {

constexpr std::string_view kDeletedSuffix = " (deleted)";

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

// Splits off the next whitespace-separated token.
std::string_view next_token(std::string_view& s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  size_t end = s.find_first_of(" \t");
  std::string_view token = s.substr(0, end);
  s.remove_prefix(end == std::string_view::npos ? s.size() : end);
  return token;
}

std::vector<std::string_view> tokens(std::string_view s) {
  std::vector<std::string_view> out;
  for (std::string_view t = next_token(s); !t.empty(); t = next_token(s)) out.push_back(t);
  return out;
}

template <typename T>
bool parse_number(std::string_view text, T& out, int base = 10) {
  if (text.empty()) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out, base);
  return ec == std::errc() && ptr == text.data() + text.size();
}

// A number or an error "SOURCE:LINE: bad WHAT 'TEXT'".
template <typename T>
T number(std::string_view text, int base, std::string_view what, std::string_view source, int line) {
  T value{};
  if (!parse_number(text, value, base)) fail("{}:{}: bad {} '{}'", source, line, what, text);
  return value;
}

template <typename Fn>
void for_each_line(std::string_view text, Fn&& fn) {
  int line_number = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_number;
    fn(line, line_number);
  }
}

// pid 0 is the caller: /proc/self, which names it in any /proc, also one of an outer PID
// namespace (a restored job that shares its host's mounts sees the host's /proc).
std::string proc_path(pid_t pid, std::string_view rest) {
  if (pid == 0) return fmt::format("/proc/self/{}", rest);
  return fmt::format("/proc/{}/{}", pid, rest);
}

void classify(MapEntry& m) {
  const std::string& p = m.path;
  if (p.empty()) {
    m.kind = VmaKind::Anonymous;
  } else if (p.front() != '[' || p.back() != ']' || m.inode != 0) {
    m.kind = VmaKind::File;
  } else if (p == "[heap]") {
    m.kind = VmaKind::Heap;
  } else if (p == "[stack]") {
    m.kind = VmaKind::Stack;
  } else if (p == "[vdso]") {
    m.kind = VmaKind::Vdso;
  } else if (p == "[vvar]") {
    m.kind = VmaKind::Vvar;
  } else if (p == "[vvar_vclock]") {
    m.kind = VmaKind::VvarVclock;
  } else if (p == "[vsyscall]") {
    m.kind = VmaKind::Vsyscall;
  } else if (p.starts_with("[anon:")) {
    m.kind = VmaKind::AnonNamed;
    m.anon_name = p.substr(6, p.size() - 7);
  } else if (p.starts_with("[anon_shmem:")) {
    m.kind = VmaKind::AnonShmemNamed;
    m.anon_name = p.substr(12, p.size() - 13);
  } else {
    m.kind = VmaKind::OtherSpecial;
  }
}

// A smaps header line starts with "HEX-HEX "; attribute lines start with "Name:".
bool is_smaps_attribute(std::string_view line) {
  size_t colon = line.find(':');
  size_t space = line.find_first_of(" \t");
  return colon != std::string_view::npos && (space == std::string_view::npos || colon < space);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// maps / smaps

bool MapEntry::has_vm_flag(std::string_view flag) const {
  return std::find(vm_flags.begin(), vm_flags.end(), flag) != vm_flags.end();
}

std::string MapEntry::perms() const {
  std::string s = "----";
  if (read) s[0] = 'r';
  if (write) s[1] = 'w';
  if (exec) s[2] = 'x';
  s[3] = shared ? 's' : 'p';
  return s;
}

MapEntry parse_maps_line(std::string_view line, std::string_view source, int ln) {
  MapEntry m;
  std::string_view rest = line;
  std::string_view range = next_token(rest);
  size_t dash = range.find('-');
  if (dash == std::string_view::npos) fail("{}:{}: bad address range '{}' in '{}'", source, ln, range, line);
  m.start = number<uint64_t>(range.substr(0, dash), 16, "start address", source, ln);
  m.end = number<uint64_t>(range.substr(dash + 1), 16, "end address", source, ln);
  if (m.end <= m.start) fail("{}:{}: empty or inverted range '{}'", source, ln, range);

  std::string_view perms = next_token(rest);
  if (perms.size() != 4 || (perms[0] != 'r' && perms[0] != '-') || (perms[1] != 'w' && perms[1] != '-') ||
      (perms[2] != 'x' && perms[2] != '-') || (perms[3] != 'p' && perms[3] != 's'))
    fail("{}:{}: bad permissions '{}'", source, ln, perms);
  m.read = perms[0] == 'r';
  m.write = perms[1] == 'w';
  m.exec = perms[2] == 'x';
  m.shared = perms[3] == 's';

  m.offset = number<uint64_t>(next_token(rest), 16, "offset", source, ln);
  std::string_view dev = next_token(rest);
  size_t colon = dev.find(':');
  if (colon == std::string_view::npos) fail("{}:{}: bad device '{}'", source, ln, dev);
  m.dev_major = number<uint32_t>(dev.substr(0, colon), 16, "device major", source, ln);
  m.dev_minor = number<uint32_t>(dev.substr(colon + 1), 16, "device minor", source, ln);
  m.inode = number<uint64_t>(next_token(rest), 10, "inode", source, ln);

  // The path is the rest after the padding; it may contain spaces.
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  std::string_view path = rest;
  if (path.ends_with(kDeletedSuffix) && !path.starts_with("[")) {
    m.deleted = true;
    path.remove_suffix(kDeletedSuffix.size());
  }
  m.path = std::string(path);
  classify(m);
  return m;
}

std::vector<MapEntry> parse_maps(std::string_view text, std::string_view source) {
  std::vector<MapEntry> out;
  for_each_line(text, [&](std::string_view line, int ln) {
    if (line.empty()) return;
    out.push_back(parse_maps_line(line, source, ln));
  });
  return out;
}

std::vector<MapEntry> parse_smaps(std::string_view text, std::string_view source) {
  std::vector<MapEntry> out;
  for_each_line(text, [&](std::string_view line, int ln) {
    if (line.empty()) return;
    if (!is_smaps_attribute(line)) {
      out.push_back(parse_maps_line(line, source, ln));
      return;
    }
    if (out.empty()) fail("{}:{}: attribute before the first mapping: '{}'", source, ln, line);
    MapEntry& m = out.back();
    size_t colon = line.find(':');
    std::string key(line.substr(0, colon));
    std::string_view value = trim(line.substr(colon + 1));
    if (key == "VmFlags") {
      for (std::string_view flag : tokens(value)) m.vm_flags.emplace_back(flag);
      return;
    }
    std::vector<std::string_view> parts = tokens(value);
    // "Rss:   12 kB"; a few lines carry plain numbers (THPeligible, ProtectionKey).
    if (parts.empty() || parts.size() > 2 || (parts.size() == 2 && parts[1] != "kB"))
      fail("{}:{}: bad smaps line '{}'", source, ln, line);
    m.sizes_kb[key] = number<uint64_t>(parts[0], 10, key, source, ln);
  });
  return out;
}

std::vector<MapEntry> read_maps(pid_t pid) {
  std::string path = proc_path(pid, "maps");
  return parse_maps(read_file(path), path);
}

std::vector<MapEntry> read_smaps(pid_t pid) {
  std::string path = proc_path(pid, "smaps");
  return parse_smaps(read_file(path), path);
}

// ---------------------------------------------------------------------------------------
// stat

Stat parse_stat(std::string_view text, std::string_view source) {
  Stat st;
  text = trim(text);
  // comm may hold spaces and parentheses: it runs from the first '(' to the last ')'.
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    fail("{}:1: no '(comm)' in '{}'", source, text.substr(0, 80));
  st.fields.emplace_back(trim(text.substr(0, open)));
  st.fields.emplace_back(text.substr(open + 1, close - open - 1));
  for (std::string_view t : tokens(text.substr(close + 1))) st.fields.emplace_back(t);
  if (st.fields.size() < 52) fail("{}:1: {} fields, expected at least 52", source, st.fields.size());

  auto f = [&](int n) -> std::string_view { return st.fields[static_cast<size_t>(n - 1)]; };
  auto u64 = [&](int n, std::string_view what) { return number<uint64_t>(f(n), 10, what, source, 1); };
  auto i64 = [&](int n, std::string_view what) { return number<int64_t>(f(n), 10, what, source, 1); };

  st.pid = static_cast<pid_t>(i64(1, "pid"));
  st.comm = st.fields[1];
  if (f(3).size() != 1) fail("{}:1: bad state '{}'", source, f(3));
  st.state = f(3)[0];
  st.ppid = static_cast<pid_t>(i64(4, "ppid"));
  st.pgrp = static_cast<pid_t>(i64(5, "pgrp"));
  st.session = static_cast<pid_t>(i64(6, "session"));
  st.tty_nr = static_cast<int>(i64(7, "tty_nr"));
  st.tpgid = static_cast<pid_t>(i64(8, "tpgid"));
  st.flags = u64(9, "flags");
  st.utime = u64(14, "utime");
  st.stime = u64(15, "stime");
  st.priority = i64(18, "priority");
  st.nice = i64(19, "nice");
  st.num_threads = i64(20, "num_threads");
  st.starttime = u64(22, "starttime");
  st.vsize = u64(23, "vsize");
  st.rss = static_cast<uint64_t>(i64(24, "rss"));
  st.start_code = u64(26, "startcode");
  st.end_code = u64(27, "endcode");
  st.start_stack = u64(28, "startstack");
  st.exit_signal = static_cast<int>(i64(38, "exit_signal"));
  st.processor = static_cast<int>(i64(39, "processor"));
  st.rt_priority = u64(40, "rt_priority");
  st.policy = u64(41, "policy");
  st.start_data = u64(45, "start_data");
  st.end_data = u64(46, "end_data");
  st.start_brk = u64(47, "start_brk");
  st.arg_start = u64(48, "arg_start");
  st.arg_end = u64(49, "arg_end");
  st.env_start = u64(50, "env_start");
  st.env_end = u64(51, "env_end");
  st.exit_code = static_cast<int>(i64(52, "exit_code"));
  return st;
}

Stat read_stat(pid_t pid) {
  std::string path = proc_path(pid, "stat");
  return parse_stat(read_file(path), path);
}

Stat read_task_stat(pid_t pid, pid_t tid) {
  std::string path = proc_path(pid, fmt::format("task/{}/stat", tid));
  return parse_stat(read_file(path), path);
}

// ---------------------------------------------------------------------------------------
// status

Status parse_status(std::string_view text, std::string_view source) {
  Status st;
  for_each_line(text, [&](std::string_view line, int ln) {
    if (line.empty()) return;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) fail("{}:{}: no ':' in '{}'", source, ln, line);
    std::string key(line.substr(0, colon));
    std::string_view value = trim(line.substr(colon + 1));
    st.fields[key] = std::string(value);

    auto dec = [&](std::string_view v) { return number<int64_t>(v, 10, key, source, ln); };
    auto hex = [&](std::string_view v) { return number<uint64_t>(v, 16, key, source, ln); };
    auto pid_list = [&](std::vector<pid_t>& out) {
      for (std::string_view t : tokens(value)) out.push_back(static_cast<pid_t>(dec(t)));
    };
    auto id_quad = [&](uint32_t (&out)[4]) {
      std::vector<std::string_view> parts = tokens(value);
      if (parts.size() != 4) fail("{}:{}: {} needs 4 ids, got '{}'", source, ln, key, value);
      for (size_t i = 0; i < 4; ++i) out[i] = number<uint32_t>(parts[i], 10, key, source, ln);
    };

    if (key == "Name") {
      st.name = std::string(value);
    } else if (key == "State") {
      if (value.empty()) fail("{}:{}: empty State", source, ln);
      st.state = value[0];
    } else if (key == "Umask") {
      st.umask = number<uint32_t>(value, 8, key, source, ln);
    } else if (key == "Tgid") {
      st.tgid = static_cast<pid_t>(dec(value));
    } else if (key == "Pid") {
      st.pid = static_cast<pid_t>(dec(value));
    } else if (key == "PPid") {
      st.ppid = static_cast<pid_t>(dec(value));
    } else if (key == "TracerPid") {
      st.tracer_pid = static_cast<pid_t>(dec(value));
    } else if (key == "Uid") {
      id_quad(st.uid);
    } else if (key == "Gid") {
      id_quad(st.gid);
    } else if (key == "Groups") {
      for (std::string_view t : tokens(value)) st.groups.push_back(number<uint32_t>(t, 10, key, source, ln));
    } else if (key == "NStgid") {
      pid_list(st.ns_tgid);
    } else if (key == "NSpid") {
      pid_list(st.ns_pid);
    } else if (key == "NSpgid") {
      pid_list(st.ns_pgid);
    } else if (key == "NSsid") {
      pid_list(st.ns_sid);
    } else if (key == "Threads") {
      st.threads = static_cast<int>(dec(value));
    } else if (key == "SigQ") {
      size_t slash = value.find('/');
      if (slash == std::string_view::npos) fail("{}:{}: bad SigQ '{}'", source, ln, value);
      st.sig_queued = number<uint64_t>(value.substr(0, slash), 10, key, source, ln);
      st.sig_queue_limit = number<uint64_t>(value.substr(slash + 1), 10, key, source, ln);
    } else if (key == "SigPnd") {
      st.sig_pending = hex(value);
    } else if (key == "ShdPnd") {
      st.shared_pending = hex(value);
    } else if (key == "SigBlk") {
      st.sig_blocked = hex(value);
    } else if (key == "SigIgn") {
      st.sig_ignored = hex(value);
    } else if (key == "SigCgt") {
      st.sig_caught = hex(value);
    } else if (key == "CapInh") {
      st.cap_inh = hex(value);
    } else if (key == "CapPrm") {
      st.cap_prm = hex(value);
    } else if (key == "CapEff") {
      st.cap_eff = hex(value);
    } else if (key == "CapBnd") {
      st.cap_bnd = hex(value);
    } else if (key == "CapAmb") {
      st.cap_amb = hex(value);
    } else if (key == "NoNewPrivs") {
      st.no_new_privs = static_cast<int>(dec(value));
    } else if (key == "Seccomp") {
      st.seccomp = static_cast<int>(dec(value));
    }
  });
  if (st.pid == 0) fail("{}: no Pid line", source);
  return st;
}

Status read_status(pid_t pid) {
  std::string path = proc_path(pid, "status");
  return parse_status(read_file(path), path);
}

Status read_task_status(pid_t pid, pid_t tid) {
  std::string path = proc_path(pid, fmt::format("task/{}/status", tid));
  return parse_status(read_file(path), path);
}

// ---------------------------------------------------------------------------------------
// tasks, fds, namespaces

namespace {

// Numeric entries of a /proc directory, sorted.
std::vector<long> numeric_entries(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (!dir) fail_errno(errno, "open directory {}", path);
  std::vector<long> out;
  errno = 0;
  while (dirent* e = ::readdir(dir)) {
    long n = 0;
    std::string_view name(e->d_name);
    if (parse_number(name, n)) out.push_back(n);
  }
  int err = errno;
  ::closedir(dir);
  if (err != 0) fail_errno(err, "read directory {}", path);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<pid_t> list_tasks(pid_t pid) {
  std::vector<pid_t> out;
  for (long n : numeric_entries(proc_path(pid, "task"))) out.push_back(static_cast<pid_t>(n));
  // Leader first (sorted order already puts it first unless tids wrapped around).
  auto it = std::find(out.begin(), out.end(), pid);
  if (it != out.end()) std::rotate(out.begin(), it, it + 1);
  return out;
}

std::vector<pid_t> list_children(pid_t pid, pid_t tid) {
  std::string path = proc_path(pid, fmt::format("task/{}/children", tid));
  std::vector<pid_t> out;
  const std::string text = read_file(path);  // the tokens point into it
  for (std::string_view t : tokens(trim(text)))
    out.push_back(static_cast<pid_t>(number<long>(t, 10, "child pid", path, 1)));
  return out;
}

UniqueFd open_namespace(pid_t pid, std::string_view kind) {
  const std::string path = fmt::format("/proc/{}/ns/{}", pid, kind);
  UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) fail_errno(errno, "open {}", path);
  return ns;
}

std::vector<int> list_fds(pid_t pid) {
  std::vector<int> out;
  for (long n : numeric_entries(proc_path(pid, "fd"))) out.push_back(static_cast<int>(n));
  return out;
}

std::string read_link(const std::string& path) {
  std::string buf(256, '\0');
  for (;;) {
    ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
    if (n < 0) fail_errno(errno, "readlink {}", path);
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    buf.resize(buf.size() * 2);
  }
}

std::string read_fd_link(pid_t pid, int fd) { return read_link(proc_path(pid, fmt::format("fd/{}", fd))); }

FdInfo parse_fdinfo(std::string_view text, std::string_view source) {
  FdInfo info;
  bool have_pos = false, have_flags = false;
  for_each_line(text, [&](std::string_view line, int ln) {
    if (line.empty()) return;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) fail("{}:{}: no ':' in '{}'", source, ln, line);
    std::string_view key = line.substr(0, colon);
    std::string_view value = trim(line.substr(colon + 1));
    if (key == "pos") {
      info.pos = number<uint64_t>(value, 10, "pos", source, ln);
      have_pos = true;
    } else if (key == "flags") {
      info.flags = number<uint32_t>(value, 8, "flags", source, ln);
      have_flags = true;
    } else if (key == "mnt_id") {
      info.mnt_id = number<int>(value, 10, "mnt_id", source, ln);
    } else if (key == "ino") {
      info.ino = number<uint64_t>(value, 10, "ino", source, ln);
    } else {
      info.extra.emplace_back(std::string(key), std::string(value));
    }
  });
  if (!have_pos || !have_flags) fail("{}: missing pos or flags line", source);
  return info;
}

FdInfo read_fdinfo(pid_t pid, int fd) {
  std::string path = proc_path(pid, fmt::format("fdinfo/{}", fd));
  return parse_fdinfo(read_file(path), path);
}

std::map<std::string, uint64_t> read_namespaces(pid_t pid) {
  static constexpr std::string_view kNames[] = {"cgroup", "ipc",  "mnt",  "net",  "pid", "pid_for_children",
                                                "time",   "time_for_children", "user", "uts"};
  std::map<std::string, uint64_t> out;
  for (std::string_view name : kNames) {
    std::string path = proc_path(pid, fmt::format("ns/{}", name));
    struct stat st{};
    if (::stat(path.c_str(), &st) < 0) {
      if (errno == ENOENT) continue;  // a namespace kind this kernel lacks
      fail_errno(errno, "stat {}", path);
    }
    out.emplace(std::string(name), st.st_ino);
  }
  return out;
}

}  // namespace stasis::proc
