// Live migration over a veth link: a job holding N MiB (default 1024) that rewrites pages at
// 0, 10 and 100 MB/s, moved by `stasis migrate` to a `stasis serve` in a network namespace of
// its own (the second host), linked to this one by a veth pair. Printed for each rate: total
// time, downtime (freeze here to running there), bytes on the wire, pre-copy rounds; and, for
// reference, the time to send N MiB over the same link with plain TCP.
//
//   migrate_bench [--mib 1024] [--rates 0,10,100] [--stasis PATH] [--dirtier PATH] [--key]
//
// The job is tests/workloads/dirtier (it also checks all its pages twice a second, which costs
// it CPU time on both hosts). Run as root; the namespace, link and containers are removed at
// the end.
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string quote(const std::string& s) { return "'" + s + "'"; }

int sh(const std::string& cmd) { return std::system(cmd.c_str()); }

std::string capture(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  ::pclose(p);
  return out;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

double field(const std::string& json, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex("\"" + name + "\":([0-9.]+)"))) return -1;
  return std::stod(m[1]);
}

struct Link {
  std::string netns, here, there, a_here, a_there;
  Link() {
    const std::string tag = std::to_string(::getpid() % 100000);
    const int n = static_cast<int>(::getpid() % 250) + 1;
    netns = "stasis-mb-" + tag;
    here = "smb" + tag + "a";
    there = "smb" + tag + "b";
    a_here = "10.78." + std::to_string(n) + ".1";
    a_there = "10.78." + std::to_string(n) + ".2";
    if (sh("ip netns add " + netns) != 0 ||
        sh("ip link add " + here + " type veth peer name " + there + " netns " + netns) != 0 ||
        sh("ip addr add " + a_here + "/24 dev " + here + " && ip link set " + here + " up") != 0 ||
        sh("ip -n " + netns + " addr add " + a_there + "/24 dev " + there + " && ip -n " + netns + " link set " +
           there + " up && ip -n " + netns + " link set lo up") != 0) {
      std::fprintf(stderr, "migrate_bench: could not set up the veth link (root needed)\n");
      std::exit(1);
    }
  }
  ~Link() {
    sh("ip link del " + here + " 2>/dev/null");
    sh("ip netns del " + netns + " 2>/dev/null");
  }
};

// Plain TCP over the link: N MiB from here to a reader in the namespace; seconds.
double raw_send(const Link& link, size_t mib) {
  int ready[2];
  if (::pipe(ready) < 0) return -1;
  pid_t reader = ::fork();
  if (reader == 0) {
    int ns = ::open(("/run/netns/" + link.netns).c_str(), O_RDONLY);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) < 0) ::_exit(1);
    int l = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(47011);
    ::inet_pton(AF_INET, link.a_there.c_str(), &a.sin_addr);
    int on = 1;
    ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(l, 1) < 0) ::_exit(1);
    (void)!::write(ready[1], "r", 1);
    int c = ::accept(l, nullptr, nullptr);
    std::vector<char> buf(1 << 20);
    while (::read(c, buf.data(), buf.size()) > 0) {
    }
    ::_exit(0);
  }
  char r;
  if (::read(ready[0], &r, 1) != 1) return -1;
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(47011);
  ::inet_pton(AF_INET, link.a_there.c_str(), &a.sin_addr);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return -1;
  std::vector<char> buf(1 << 20, 'x');
  const auto t0 = Clock::now();
  for (size_t i = 0; i < mib; ++i)
    for (size_t done = 0; done < buf.size();) {
      ssize_t n = ::write(s, buf.data() + done, buf.size() - done);
      if (n <= 0) return -1;
      done += static_cast<size_t>(n);
    }
  ::shutdown(s, SHUT_WR);
  ::waitpid(reader, nullptr, 0);  // it read everything
  const double seconds = since(t0);
  ::close(s);
  return seconds;
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path self = fs::canonical("/proc/self/exe").parent_path();
  std::string stasis = (self.parent_path() / "stasis").string();
  std::string dirtier = (self.parent_path() / "tests/workloads/dirtier").string();
  size_t mib = 1024;
  std::vector<int> rates{0, 10, 100};
  bool key = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--mib") mib = std::stoul(next());
    else if (a == "--stasis") stasis = next();
    else if (a == "--dirtier") dirtier = next();
    else if (a == "--key") key = true;
    else if (a == "--rates") {
      rates.clear();
      std::stringstream in(next());
      for (std::string r; std::getline(in, r, ',');) rates.push_back(std::stoi(r));
    } else {
      std::fprintf(stderr, "usage: migrate_bench [--mib N] [--rates 0,10,100] [--stasis PATH] [--dirtier PATH] [--key]\n");
      return 2;
    }
  }
  Link link;
  char tmpl[] = "/tmp/stasis-migrate-bench-XXXXXX";
  if (!::mkdtemp(tmpl)) return 1;
  const fs::path work = tmpl, src = work / "src", dst = work / "dst", keyfile = work / "key";
  fs::create_directories(src);
  fs::create_directories(dst);
  sh("head -c 32 /dev/urandom > " + quote(keyfile.string()));
  const std::string auth = key ? "--key " + quote(keyfile.string()) : "--plaintext";

  const double raw = raw_send(link, mib);
  std::printf("link: %zu MiB over the veth with plain TCP in %.3f s (%.0f MiB/s)\n", mib, raw, mib / raw);

  // serve in the namespace.
  const fs::path serve_log = work / "serve.log";
  pid_t serve = ::fork();
  if (serve == 0) {
    int fd = ::open(serve_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::string cmd = "exec nsenter --net=/run/netns/" + link.netns + " " + quote(stasis) + " --root " +
                      quote(dst.string()) + " serve --listen " + link.a_there + ":0 " + auth;
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string to;
  for (int i = 0; i < 500 && to.empty(); ++i) {
    std::smatch m;
    std::string log = read_text(serve_log);
    if (std::regex_search(log, m, std::regex("listening on ([0-9.]+:[0-9]+)"))) to = m[1];
    else std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (to.empty()) {
    std::fprintf(stderr, "serve did not start: %s\n", read_text(serve_log).c_str());
    ::kill(serve, SIGKILL);
    return 1;
  }

  std::printf("%-10s %8s %10s %12s %7s %s\n", "dirty", "total s", "downtime s", "wire MiB", "rounds",
              "(total / plain TCP)");
  for (int rate : rates) {
    // Pages per 10 ms iteration for `rate` MB/s.
    const long per_iter = static_cast<long>(rate * 1e6 / 4096 / 100 + 0.5);
    const std::string name = "mb" + std::to_string(rate);
    const fs::path status = work / (name + ".status");
    sh(quote(stasis) + " --root " + quote(src.string()) + " run -d --name " + name + " -- " + quote(dirtier) + " " +
       quote(status.string()) + " " + std::to_string(mib) + " " + std::to_string(per_iter) + " >/dev/null");
    for (int i = 0; i < 600 && read_text(status).rfind("ok", 0) != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const std::string out = capture(quote(stasis) + " --root " + quote(src.string()) + " migrate " + name + " --to " +
                                    to + " " + auth + " --json 2>&1");
    const size_t at = out.find("\"event\":\"done\"");
    if (at == std::string::npos) {
      std::printf("%-10s migration failed: %s\n", (std::to_string(rate) + " MB/s").c_str(), out.c_str());
    } else {
      const std::string done = out.substr(at);
      const double total = field(done, "total_s");
      std::printf("%-10s %8.3f %10.3f %12.1f %7.0f (%.2f)  dump %.3f, send %.3f, restore there %.3f\n",
                  (std::to_string(rate) + " MB/s").c_str(), total, field(done, "downtime_s"),
                  field(done, "bytes_sent") / 1048576.0, field(done, "rounds"), total / raw, field(done, "final_dump_s"),
                  field(done, "send_s"), field(done, "restore_s"));
    }
    std::fflush(stdout);
    sh(quote(stasis) + " --root " + quote(dst.string()) + " rm -f " + name + " >/dev/null 2>&1");
    sh(quote(stasis) + " --root " + quote(src.string()) + " rm -f " + name + " >/dev/null 2>&1");
  }
  ::kill(serve, SIGTERM);
  ::waitpid(serve, nullptr, 0);
  fs::remove_all(work);
  return 0;
}
