#include "common/mountinfo.h"

#include <sstream>

#include "common/error.h"
#include "common/file_util.h"

namespace stasis {

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3') {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

std::vector<MountInfo> parse_mountinfo(std::string_view text, std::string_view source) {
  std::vector<MountInfo> out;
  std::istringstream in{std::string(text)};
  int line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    if (line.empty()) continue;
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string word; words >> word;) w.push_back(word);
    MountInfo m;
    size_t dash = 0;
    while (dash < w.size() && w[dash] != "-") ++dash;
    if (w.size() < 6 || dash < 6 || dash + 3 > w.size())
      fail("{}:{}: cannot parse the mount '{}'", source, line_number, line);
    m.id = static_cast<uint32_t>(std::stoul(w[0]));
    m.parent = static_cast<uint32_t>(std::stoul(w[1]));
    if (std::sscanf(w[2].c_str(), "%u:%u", &m.major, &m.minor) != 2)
      fail("{}:{}: cannot parse the device '{}'", source, line_number, w[2]);
    m.root = unescape(w[3]);
    m.mount_point = unescape(w[4]);
    m.mount_options = w[5];
    for (size_t i = 6; i < dash; ++i) {
      const std::string& f = w[i];
      if (f.rfind("shared:", 0) == 0) m.shared = static_cast<uint32_t>(std::stoul(f.substr(7)));
      else if (f.rfind("master:", 0) == 0) m.master = static_cast<uint32_t>(std::stoul(f.substr(7)));
      else if (f == "unbindable") m.unbindable = true;
    }
    m.fstype = w[dash + 1];
    m.source = unescape(w[dash + 2]);
    if (dash + 3 < w.size()) m.super_options = w[dash + 3];
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<MountInfo> read_mountinfo(pid_t pid) {
  const std::string path = pid == 0 ? "/proc/self/mountinfo" : fmt::format("/proc/{}/mountinfo", pid);
  return parse_mountinfo(read_file(path), path);
}

std::string mount_key(const MountInfo& m) { return fmt::format("{} {:016x}", m.id, fnv1a(m.mount_point)); }

std::string own_mount_report() {
  std::string out;
  for (const MountInfo& m : read_mountinfo(0)) out += "M " + mount_key(m) + "\n";
  return out;
}

}  // namespace stasis
