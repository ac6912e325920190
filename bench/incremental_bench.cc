// Incremental dumps: what dirty tracking costs the job, and what a pre-dump and the final
// incremental dump cost, for a job of N MiB (default 1024) that writes a tenth of it between
// the two.
//
//   incremental_bench [--mib 1024] [--percent 10] [--dir /dev/shm] [--stasis PATH]
//
// The job is a child of the bench (forked, its fds closed, its own session) holding N MiB of
// random data; a shared page carries its commands and counters. Printed:
//  - the job's own work rate: the time to write every page once (one 4 KiB store each),
//    without tracking, and again right after a pre-dump has write-protected them (each first
//    write takes a write-protect fault, resolved by the kernel);
//  - `dump --pre-dump` (wall time, time the job was stopped, bytes of the page files);
//  - a second pre-dump with --parent (everything was written since: about N MiB again);
//  - the job writes P% of its pages (random ones); the final `dump --parent` (the job killed);
//  - the restore of the chain.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Control {
  std::atomic<int> command;  // 0 idle, 1 write every page once, 2 write `percent`% of pages
  std::atomic<int> done;     // incremented when a command is finished
  std::atomic<int> ready;
  double seconds;            // how long the last command took, in the job
};

[[noreturn]] void job(Control* c, size_t mib, int percent) {
  const size_t pages = mib * 256;
  auto* mem = static_cast<uint64_t*>(
      mmap(nullptr, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (mem == MAP_FAILED) _exit(1);
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  for (size_t i = 0; i < pages * 512; ++i) {
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    mem[i] = x * 0x2545F4914F6CDD1DULL;
  }
  c->ready = 1;
  for (uint64_t round = 1;; ++round) {
    int cmd = c->command.exchange(0);
    if (cmd == 0) {
      usleep(1000);
      continue;
    }
    auto t0 = Clock::now();
    for (size_t p = 0; p < pages; ++p) {
      if (cmd == 2 && (p * 0x9E3779B97F4A7C15ULL >> 32) % 100 >= static_cast<uint64_t>(percent)) continue;
      mem[p * 512 + (round % 512)] = round;  // one store: the page is written
    }
    c->seconds = since(t0);
    c->done.fetch_add(1);
  }
}

struct Result {
  int code = -1;
  std::string out;
};

Result run(const std::vector<std::string>& argv) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    dup2(p[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(p[1]);
  Result r;
  char buf[4096];
  for (ssize_t n; (n = read(p[0], buf, sizeof buf)) > 0;) r.out.append(buf, static_cast<size_t>(n));
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

uint64_t page_bytes(const fs::path& dir) {
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("pages-", 0) == 0) n += fs::file_size(e.path());
  return n;
}

double frozen_of(const std::string& out) {
  std::smatch m;
  return std::regex_search(out, m, std::regex("frozen ([0-9.]+)s")) ? std::stod(m[1]) : -1;
}

void command(Control* c, int cmd) {
  int before = c->done.load();
  c->command = cmd;
  while (c->done.load() == before) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = 1024;
  int percent = 10;
  std::string dir = "/dev/shm", stasis;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--mib") mib = std::stoul(argv[i + 1]);
    else if (a == "--percent") percent = std::stoi(argv[i + 1]);
    else if (a == "--dir") dir = argv[i + 1];
    else if (a == "--stasis") stasis = argv[i + 1];
  }
  if (stasis.empty()) stasis = (fs::canonical("/proc/self/exe").parent_path().parent_path() / "stasis").string();
  const fs::path work = fs::path(dir) / ("stasis-incremental-bench-" + std::to_string(getpid()));
  fs::create_directories(work);
  const std::string root = (work / "root").string();

  auto* c = static_cast<Control*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  new (c) Control{};
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    syscall(SYS_close_range, 0, ~0U, 0);
    int null_fd = open("/dev/null", O_RDWR);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    job(c, mib, percent);
  }
  std::printf("job: pid %d, %zu MiB of random data; writes %d%% of its pages between the pre-dump and the dump\n", pid,
              mib, percent);
  while (!c->ready) std::this_thread::sleep_for(std::chrono::milliseconds(10));

  command(c, 1);
  const double untracked = c->seconds;
  command(c, 1);
  const double untracked2 = c->seconds;
  auto dump = [&](const char* label, const std::vector<std::string>& extra, const fs::path& to) {
    std::vector<std::string> args{stasis, "--root", root, "dump", "--pid", std::to_string(pid), "-D", to.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    auto t0 = Clock::now();
    Result r = run(args);
    const double s = since(t0);
    if (r.code != 0) {
      std::printf("%s failed:\n%s\n", label, r.out.c_str());
      kill(pid, SIGKILL);
      exit(1);
    }
    std::printf("%-34s %7.3f s, job stopped %.3f s, page files %8.1f MiB\n", label, s, frozen_of(r.out),
                page_bytes(to) / 1048576.0);
  };
  const fs::path pre1 = work / "pre1", pre2 = work / "pre2", last = work / "last";
  dump("dump --pre-dump:", {"--pre-dump", "--compress", "none"}, pre1);
  command(c, 1);
  const double tracked = c->seconds;
  command(c, 1);
  const double tracked_again = c->seconds;
  std::printf("job writing each of its %zu pages once: %.3f s untracked (%.3f s again), %.3f s right after the "
              "pre-dump (%.0f ns per write-protect fault), %.3f s once written\n",
              mib * 256, untracked, untracked2, tracked, (tracked - untracked2) * 1e9 / static_cast<double>(mib * 256),
              tracked_again);
  dump("dump --pre-dump --parent pre1:", {"--pre-dump", "--parent", pre1.string(), "--compress", "none"}, pre2);
  command(c, 2);
  std::printf("job wrote %d%% of its pages in %.3f s\n", percent, c->seconds);
  dump("dump --parent pre2 (final):", {"--parent", pre2.string(), "--compress", "none"}, last);
  waitpid(pid, nullptr, 0);

  auto t0 = Clock::now();
  Result r = run({stasis, "--root", root, "restore", "-D", last.string(), "-d", "--name", "incremental-bench"});
  std::printf("restore of the chain (3 links): %.3f s%s\n", since(t0), r.code ? (" FAILED:\n" + r.out).c_str() : "");
  run({stasis, "--root", root, "rm", "-f", "incremental-bench"});
  std::error_code ec;
  fs::remove_all(work, ec);
  return r.code;
}
