// run_bench: how long `stasis run --rm -- /bin/true` takes from start to exit, beside
// `unshare --fork --pid --mount-proc --net --uts --ipc /bin/true` (the bare namespace cost).
// Median of many runs each; prints both and the ratio (goal: within 1.5x), and for scale the
// start of our own binary (`stasis ps` with no containers) and of /bin/true.
//
//   run_bench [--runs N] [--stasis PATH]     (default: ../stasis next to this binary)
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>


extern char** environ;

namespace {

namespace fs = std::filesystem;

// Runs argv with stdio on /dev/null; returns wall time in ms, or -1 when it failed.
double time_run(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  auto start = std::chrono::steady_clock::now();
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  auto end = std::chrono::steady_clock::now();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  return std::chrono::duration<double, std::milli>(end - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 50;
  std::string stasis = (fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "stasis").string();
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) runs = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--stasis") && i + 1 < argc) stasis = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--runs N] [--stasis PATH]\n", argv[0]);
      return 2;
    }
  }
  // The state root under /run, as the default /run/stasis is.
  char root_template[] = "/run/stasis-run-bench-XXXXXX";
  if (!mkdtemp(root_template)) {
    std::perror("mkdtemp");
    return 1;
  }
  std::vector<std::string> stasis_cmd = {stasis, "--root", root_template, "run", "--rm", "--", "/bin/true"};
  std::vector<std::string> unshare_cmd = {"unshare", "--fork", "--pid", "--mount-proc", "--net",
                                          "--uts",   "--ipc",  "/bin/true"};
  std::vector<std::string> ps_cmd = {stasis, "--root", root_template, "ps"}, true_cmd = {"/bin/true"};
  std::vector<double> s, u, v, t;
  // Interleaved, so that background load affects both alike; one warm-up each.
  time_run(stasis_cmd);
  time_run(unshare_cmd);
  for (int i = 0; i < runs; ++i) {
    // A pause before each: a lone invocation, not one riding on the previous one's kernel
    // state (a cgroup migration right after another skips the RCU grace period).
    usleep(50000);
    double a = time_run(stasis_cmd);
    usleep(50000);
    double b = time_run(unshare_cmd);
    if (a < 0 || b < 0) {
      std::fprintf(stderr, "run %d failed (stasis %.3f ms, unshare %.3f ms)\n", i, a, b);
      fs::remove_all(root_template);
      return 1;
    }
    s.push_back(a);
    u.push_back(b);
    // For scale: starting our binary, and starting any binary.
    usleep(50000);
    v.push_back(time_run(ps_cmd));
    usleep(50000);
    t.push_back(time_run(true_cmd));
  }
  fs::remove_all(root_template);
  double ms = median(s), mu = median(u);
  std::printf("runs: %d each\n", runs);
  std::printf("stasis run --rm -- /bin/true:                          median %.2f ms\n", ms);
  std::printf("unshare --fork --pid --mount-proc --net --uts --ipc:   median %.2f ms\n", mu);
  std::printf("ratio: %.2fx (goal: <= 1.5x)\n", ms / mu);
  std::printf("for scale: stasis ps (no containers) %.2f ms, /bin/true %.2f ms\n", median(v), median(t));
  return 0;
}
