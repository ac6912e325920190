#include "launcher/nat.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "common/error.h"
#include "common/fd.h"
#include "common/file_util.h"

namespace stasis::launcher::nat {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTable = "ip stasis";

// The helper beside the running binary (installed), else on PATH, else in the build folder
// (test binaries live in a subfolder of it).
std::string helper_path() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path beside = self.parent_path() / "stasis-nft";
    if (::access(beside.c_str(), X_OK) == 0) return beside.string();
  }
  if (const char* path = std::getenv("PATH")) {
    std::string dirs = path;
    for (size_t start = 0; start <= dirs.size();) {
      size_t end = dirs.find(':', start);
      if (end == std::string::npos) end = dirs.size();
      fs::path candidate = fs::path(dirs.substr(start, end - start)) / "stasis-nft";
      if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate.string();
      start = end + 1;
    }
  }
#ifdef STASIS_NFT_BUILD_PATH
  if (::access(STASIS_NFT_BUILD_PATH, X_OK) == 0) return STASIS_NFT_BUILD_PATH;
#endif
  fail("nftables: the helper stasis-nft is not installed beside {} nor on PATH", self.string());
}

}  // namespace

std::string run_batch(const std::string& commands, bool may_fail, int netns_fd) {
  const std::string helper = helper_path();
  int in[2], err[2];
  check_sys(::pipe2(in, O_CLOEXEC), "pipe");
  UniqueFd in_read(in[0]), in_write(in[1]);
  check_sys(::pipe2(err, O_CLOEXEC), "pipe");
  UniqueFd err_read(err[0]), err_write(err[1]);
  pid_t pid = check_sys(::fork(), "fork {}", helper);
  if (pid == 0) {
    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) < 0) ::_exit(126);
    ::dup2(in_read.get(), 0);
    ::dup2(err_write.get(), 1);
    ::dup2(err_write.get(), 2);
    const char* argv[] = {helper.c_str(), nullptr};
    ::execv(helper.c_str(), const_cast<char* const*>(argv));
    ::_exit(127);
  }
  in_read.reset();
  err_write.reset();
  // A few hundred bytes: far below a pipe's capacity, so no deadlock with the helper's output.
  try {
    write_all(in_write.get(), std::as_bytes(std::span(commands.data(), commands.size())), "stasis-nft stdin");
  } catch (const Error&) {
    // The helper died early: its status says why.
  }
  in_write.reset();
  std::string messages;
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(err_read.get(), buf, sizeof buf);
    if (n > 0) messages.append(buf, static_cast<size_t>(n));
    else if (n == 0 || errno != EINTR) break;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) fail_errno(errno, "wait for {} (pid {})", helper, pid);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  while (!messages.empty() && messages.back() == '\n') messages.pop_back();
  if (messages.empty()) messages = fmt::format("{} ended with status {}", helper, status);
  if (!may_fail) fail("nftables: {}: {}", commands.substr(0, commands.find('\n')), messages);
  return messages;
}

namespace {

std::string run(const std::string& commands, bool may_fail) { return run_batch(commands, may_fail); }

std::string key(const pb::PortMapping& port) { return fmt::format("{} . {}", port.protocol(), port.host_port()); }

}  // namespace

void install(const std::string& subnet, const std::string& bridge) {
  // "add" then "delete" makes the batch work whether or not a stale table is there.
  run(fmt::format(
          "add table {t}\n"
          "delete table {t}\n"
          "table {t} {{\n"
          "  map ports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n"
          "  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept;\n"
          "    fib daddr type local dnat ip to meta l4proto . th dport map @ports; }}\n"
          "  chain output {{ type nat hook output priority -100; policy accept;\n"
          "    fib daddr type local dnat ip to meta l4proto . th dport map @ports; }}\n"
          "  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n"
          "    ip saddr {s} ip daddr != {s} masquerade;\n"
          "    ip saddr {{ 127.0.0.0/8, {s} }} ct status dnat oifname \"{b}\" masquerade; }}\n"
          "}}\n",
          fmt::arg("t", kTable), fmt::arg("s", subnet), fmt::arg("b", bridge)),
      false);
}

void uninstall() { run(fmt::format("add table {t}\ndelete table {t}\n", fmt::arg("t", kTable)), false); }

void publish(const std::string& container_ip, const pb::PortMapping& port) {
  unpublish(port);
  run(fmt::format("add element {} ports {{ {} : {} . {} }}\n", kTable, key(port), container_ip,
                  port.container_port()),
      false);
}

void unpublish(const pb::PortMapping& port) {
  run(fmt::format("delete element {} ports {{ {} }}\n", kTable, key(port)), true);
}

}  // namespace stasis::launcher::nat
