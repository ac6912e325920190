#include "tests/support/test_util.h"

#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "common/error.h"
#include "common/features.h"

namespace stasis::test {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  CommandResult result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_count = 2;
  bool killed = false;
  while (open_count > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
    int n = poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      ssize_t r = read(fds[i].fd, buf, sizeof buf);
      if (r <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_count;
      } else {
        (i == 0 ? result.out : result.err).append(buf, static_cast<size_t>(r));
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (killed) result.err += "\n[test: command timed out and was killed]";
  return result;
}

std::string stasis_binary() { return STASIS_BINARY; }
std::string workload(const std::string& name) { return std::string(STASIS_WORKLOAD_DIR) + "/" + name; }

std::optional<std::string> missing_feature(std::string_view name) {
  static std::mutex mutex;
  static std::map<std::string, std::optional<std::string>, std::less<>> known;
  std::lock_guard lock(mutex);
  if (auto it = known.find(name); it != known.end()) return it->second;
  auto result = features::probe_feature(name);
  std::optional<std::string> missing;
  if (!result.ok) missing = result.detail.empty() ? std::string("probe failed") : result.detail;
  return known.emplace(std::string(name), missing).first->second;
}

CommandResult run_stasis(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{stasis_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, timeout);
}

TempDir::TempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl + ": " + strerror(errno));
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

pid_t ForkedChild::start() {
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + strerror(errno));
  if (pid == 0) prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a test that crashed
  return pid;
}

void ForkedChild::finish_child() { _exit(0); }

ForkedChild::~ForkedChild() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status;
  while (waitpid(pid_, &status, __WALL) < 0 && errno == EINTR) {
  }
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// An OCI bundle in `bundle` for runc: a python3 counter writing /state/counter every 50 ms,
// in its own pid, network, ipc, uts and mount namespaces, with the host's /usr bound
// read-only under a rootfs of empty folders, and runc's usual mounts, masks and read-only
// paths.
void write_runc_counter_bundle(const std::filesystem::path& bundle, const std::string& hostname,
                               const std::string& program, bool terminal) {
  namespace fs = std::filesystem;
  const std::string counter =
      "import time,itertools\\n[(open('/state/counter','w').write(str(i)),time.sleep(0.05)) for i in "
      "itertools.count(1)]";
  const fs::path rootfs = bundle / "rootfs";
  for (const char* d : {"usr", "proc", "dev", "sys", "tmp", "state", "etc"}) fs::create_directories(rootfs / d);
  for (const char* l : {"bin", "lib", "lib64", "sbin"}) fs::create_symlink(std::string("usr/") + l, rootfs / l);
  std::ofstream(bundle / "config.json") << R"({
 "ociVersion": "1.0.2-dev",
 "process": {"terminal": )" + std::string(terminal ? "true" : "false") + R"(, "user": {"uid": 0, "gid": 0}, "cwd": "/",
  "args": ["python3", "-c", ")" + (program.empty() ? counter : program) + R"("],
  "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "noNewPrivileges": true},
 "root": {"path": "rootfs", "readonly": false},
 "hostname": ")" + hostname + R"(",
 "mounts": [
  {"destination": "/proc", "type": "proc", "source": "proc"},
  {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
  {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
  {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
  {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
  {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
  {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
  {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}],
 "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]},
  "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
  "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
  "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]}
})";
}

int tcp_state(int sock) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(sock, IPPROTO_TCP, TCP_INFO, &info, &len) < 0) return -1;
  return info.tcpi_state;
}

int socket_error(int sock) {
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(sock, SOL_SOCKET, SO_ERROR, &err, &len);
  return err;
}

}  // namespace stasis::test
