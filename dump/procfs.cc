#include "dump/procfs.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "common/error.h"
#include "common/file_util.h"

namespace stasis::dump::procfs {

namespace {

std::string proc_path(pid_t pid, const std::string& rest) { return fmt::format("/proc/{}/{}", pid, rest); }

std::vector<long> list_numeric_dir(const std::string& dir) {
  std::vector<long> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) fail_errno(errno, "open {}", dir);
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long v = std::strtol(e->d_name, &end, 10);
    if (end != e->d_name && *end == 0) out.push_back(v);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

bool is_hex_range(const std::string& s) { return s.find('-') != std::string::npos && std::isxdigit(s[0]); }

}  // namespace

std::vector<MapEntry> read_smaps(pid_t pid) {
  std::string text = read_file(proc_path(pid, "smaps"));
  std::vector<MapEntry> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("VmFlags:", 0) == 0) {
      if (out.empty()) fail("/proc/{}/smaps: VmFlags before any mapping", pid);
      std::istringstream fl(line.substr(8));
      std::string f;
      while (fl >> f) out.back().vm_flags.push_back(f);
      continue;
    }
    // A mapping line starts with "start-end "; attribute lines start with "Name:".
    size_t sp = line.find(' ');
    if (sp == std::string::npos || !is_hex_range(line.substr(0, sp)) || line[sp - 1] == ':') continue;
    MapEntry m;
    char perms[8] = {};
    unsigned long long start, end, offset, inode;
    unsigned major, minor;
    int consumed = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms, &offset, &major, &minor,
                    &inode, &consumed) < 7)
      fail("/proc/{}/smaps: cannot parse line '{}'", pid, line);
    m.start = start;
    m.end = end;
    m.perms = perms;
    m.offset = offset;
    m.dev_major = major;
    m.dev_minor = minor;
    m.inode = inode;
    if (consumed > 0 && static_cast<size_t>(consumed) <= line.size()) {
      m.path = line.substr(static_cast<size_t>(consumed));
      while (!m.path.empty() && m.path.front() == ' ') m.path.erase(0, 1);
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::map<std::string, std::string> read_status(pid_t pid) {
  std::string text = read_file(proc_path(pid, "status"));
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    size_t b = value.find_first_not_of(" \t");
    size_t e = value.find_last_not_of(" \t");
    out[line.substr(0, colon)] = b == std::string::npos ? "" : value.substr(b, e - b + 1);
  }
  return out;
}

std::vector<std::string> read_stat(pid_t pid) {
  std::string text = read_file(proc_path(pid, "stat"));
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open)
    fail("/proc/{}/stat: unexpected format", pid);
  std::vector<std::string> out;
  out.push_back(text.substr(0, open - 1));
  out.push_back(text.substr(open + 1, close - open - 1));
  std::istringstream in(text.substr(close + 1));
  std::string f;
  while (in >> f) out.push_back(f);
  if (out.size() < 52) fail("/proc/{}/stat: only {} fields", pid, out.size());
  return out;
}

std::vector<pid_t> list_threads(pid_t pid) {
  std::vector<pid_t> out;
  for (long t : list_numeric_dir(proc_path(pid, "task"))) out.push_back(static_cast<pid_t>(t));
  auto it = std::find(out.begin(), out.end(), pid);
  if (it != out.end()) std::rotate(out.begin(), it, it + 1);
  return out;
}

std::vector<pid_t> list_children(pid_t pid) {
  std::vector<pid_t> out;
  for (pid_t tid : list_threads(pid)) {
    std::string text;
    try {
      text = read_file(proc_path(pid, fmt::format("task/{}/children", tid)));
    } catch (const Error&) {
      continue;  // the thread exited meanwhile
    }
    std::istringstream in(text);
    pid_t c;
    while (in >> c) out.push_back(c);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<int> list_fds(pid_t pid) {
  std::vector<int> out;
  for (long fd : list_numeric_dir(proc_path(pid, "fd"))) out.push_back(static_cast<int>(fd));
  return out;
}

FdInfo read_fdinfo(pid_t pid, int fd) {
  std::string text = read_file(proc_path(pid, fmt::format("fdinfo/{}", fd)));
  FdInfo info;
  std::istringstream in(text);
  std::string key;
  std::string value;
  while (in >> key >> value) {
    if (key == "pos:") info.pos = std::strtoull(value.c_str(), nullptr, 10);
    else if (key == "flags:") info.flags = static_cast<uint32_t>(std::strtoul(value.c_str(), nullptr, 8));
    else if (key == "mnt_id:") info.mnt_id = std::strtoull(value.c_str(), nullptr, 10);
    std::string rest;
    std::getline(in, rest);
  }
  return info;
}

std::string read_link(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n < 0) fail_errno(errno, "readlink {}", path);
  return std::string(buf, static_cast<size_t>(n));
}

std::vector<uint64_t> numbers(const std::string& value, int base) {
  std::vector<uint64_t> out;
  std::istringstream in(value);
  std::string f;
  while (in >> f) out.push_back(std::strtoull(f.c_str(), nullptr, base));
  return out;
}

pid_t last_pid_field(const std::map<std::string, std::string>& status, const std::string& key, pid_t pid) {
  auto it = status.find(key);
  if (it == status.end()) fail("/proc/{}/status: no {} line", pid, key);
  auto n = numbers(it->second);
  if (n.empty()) fail("/proc/{}/status: empty {} line", pid, key);
  return static_cast<pid_t>(n.back());
}

}  // namespace stasis::dump::procfs
