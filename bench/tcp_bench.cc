// Dump and restore of a process holding N established TCP connections (the inet_many
// workload; the peers are this benchmark's sockets, outside the job) against the same
// process holding none, and what the network lock adds to the dump.
//
//   tcp_bench [--connections 1000] [--repeat 3] [--dir /tmp] [--stasis PATH] [--workload PATH]
//
// Each round: start inet_many as a plain process, connect N clients and wait for its first
// "ok", `stasis -v dump --pid P --tcp-established` (timed; the lock's own time is read from
// the log line "network lock ...: in X ms"), `stasis restore -d` (timed), then check that one
// client's message is echoed by the restored job, and remove it. The best of the repeats is
// printed, with the difference to N = 0 (the goal: under 100 ms more for 1,000 connections).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
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

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

struct Result {
  int exit_code = -1;
  std::string out;
};

// Runs argv, its stdout and stderr into a file, with a time bound (then killed by its pid).
Result run(const std::vector<std::string>& argv, const fs::path& log, int timeout_s) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  Result r;
  int status = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  r.out = ss.str();
  return r;
}

bool status_ok(const fs::path& status) {
  std::ifstream in(status);
  std::string word;
  in >> word;
  return word == "ok";
}

int connect_to(int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    close(s);
    return -1;
  }
  return s;
}

bool echoes(int s) {
  const char msg[] = "ping\n";
  if (send(s, msg, 5, MSG_NOSIGNAL) != 5) return false;
  pollfd p{s, POLLIN, 0};
  char buf[16];
  return poll(&p, 1, 5000) == 1 && recv(s, buf, sizeof buf, 0) == 5;
}

struct Round {
  double dump_ms = 0, lock_ms = 0, restore_ms = 0;
  bool ok = false;
};

Round one_round(const std::string& stasis, const std::string& workload, const fs::path& dir, int n, int port, int k) {
  Round round;
  const fs::path status = dir / ("status-" + std::to_string(k));
  const fs::path images = dir / ("images-" + std::to_string(k));
  const fs::path root = dir / "root";
  pid_t job = fork();
  if (job == 0) {
    setsid();
    int null_fd = open("/dev/null", O_RDWR);
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    execl(workload.c_str(), workload.c_str(), status.c_str(), std::to_string(port).c_str(), std::to_string(n).c_str(),
          nullptr);
    _exit(127);
  }
  std::vector<int> clients;
  for (int i = 0; i < 200 && clients.empty() && n > 0; ++i) {
    int s = connect_to(port);
    if (s >= 0) clients.push_back(s);
    else std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  while (static_cast<int>(clients.size()) < n) {
    int s = connect_to(port);
    if (s < 0) break;
    clients.push_back(s);
  }
  for (int i = 0; i < 500 && !status_ok(status); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const std::string name = "tcpbench-" + std::to_string(getpid()) + "-" + std::to_string(k);
  if (status_ok(status)) {
    auto t = Clock::now();
    Result d = run({stasis, "-v", "dump", "--pid", std::to_string(job), "-D", images.string(), "--tcp-established"},
                   dir / "dump.log", 120);
    round.dump_ms = ms_since(t);
    std::smatch m;
    if (std::regex_search(d.out, m, std::regex("network lock [^\\n]* in ([0-9.]+) ms"))) round.lock_ms = std::stod(m[1]);
    waitpid(job, nullptr, 0);
    job = -1;
    if (d.exit_code == 0) {
      t = Clock::now();
      Result r = run({stasis, "--root", root.string(), "restore", "-D", images.string(), "--name", name, "-d"},
                     dir / "restore.log", 120);
      round.restore_ms = ms_since(t);
      round.ok = r.exit_code == 0 && (n == 0 || (echoes(clients.front()) && echoes(clients.back())));
      if (r.exit_code != 0) std::fprintf(stderr, "restore failed: %s\n", r.out.c_str());
    } else {
      std::fprintf(stderr, "dump failed: %s\n", d.out.c_str());
    }
  }
  run({stasis, "--root", root.string(), "rm", "-f", name}, dir / "rm.log", 30);
  if (job > 0) {
    kill(job, SIGKILL);
    waitpid(job, nullptr, 0);
  }
  for (int s : clients) close(s);
  fs::remove_all(images);
  return round;
}

}  // namespace

int main(int argc, char** argv) {
  int connections = 1000, repeat = 3;
  fs::path base = "/tmp";
  fs::path self = fs::read_symlink("/proc/self/exe").parent_path();
  std::string stasis = (self.parent_path() / "stasis").string();
  std::string workload = (self.parent_path() / "tests/workloads/inet_many").string();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--connections") connections = std::stoi(value());
    else if (a == "--repeat") repeat = std::stoi(value());
    else if (a == "--dir") base = value();
    else if (a == "--stasis") stasis = value();
    else if (a == "--workload") workload = value();
    else {
      std::fprintf(stderr, "usage: tcp_bench [--connections N] [--repeat R] [--dir DIR] [--stasis PATH] [--workload PATH]\n");
      return 2;
    }
  }
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  char tmpl[4096];
  std::snprintf(tmpl, sizeof tmpl, "%s/tcp-bench-XXXXXX", base.c_str());
  if (!mkdtemp(tmpl)) return 1;
  const fs::path dir = tmpl;
  const int port = 20000 + static_cast<int>(getpid() % 10000);
  Round best[2];
  const int counts[2] = {0, connections};
  int k = 0;
  for (int c = 0; c < 2; ++c) {
    best[c].dump_ms = best[c].restore_ms = 1e9;
    for (int r = 0; r < repeat; ++r) {
      Round x = one_round(stasis, workload, dir, counts[c], port + c, k++);
      if (!x.ok) {
        std::fprintf(stderr, "round with %d connections failed (logs in %s)\n", counts[c], dir.c_str());
        return 1;
      }
      best[c].dump_ms = std::min(best[c].dump_ms, x.dump_ms);
      best[c].restore_ms = std::min(best[c].restore_ms, x.restore_ms);
      best[c].lock_ms = r == 0 ? x.lock_ms : std::min(best[c].lock_ms, x.lock_ms);
      // A killed job's sockets linger a moment: another port for the next round.
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  std::printf("connections  dump ms  (network lock ms)  restore ms\n");
  for (int c = 0; c < 2; ++c)
    std::printf("%11d  %7.1f  %17.1f  %10.1f\n", counts[c], best[c].dump_ms, best[c].lock_ms, best[c].restore_ms);
  std::printf("%d connections add %.1f ms to the dump and %.1f ms to the restore (goal: under 100 ms each)\n",
              connections, best[1].dump_ms - best[0].dump_ms, best[1].restore_ms - best[0].restore_ms);
  fs::remove_all(dir);
  return 0;
}
