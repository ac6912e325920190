#include "tests/support/serve_process.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <regex>
#include <sstream>

namespace stasis::test {

using namespace std::chrono_literals;

ServeSetup setup_with(const std::string& key, const std::string& fault, const std::string& netns,
                      const std::string& address) {
  ServeSetup s;
  s.key = key;
  s.fault = fault;
  s.netns = netns;
  s.address = address;
  return s;
}

Server::Server(const std::filesystem::path& root, const ServeSetup& setup) : root_(root), netns_(setup.netns) {
  // A log of its own: a second serve on the same root must not be taken as up from the first
  // one's "listening on" line, nor lose its log when the first one's is removed.
  static std::atomic<int> serial{0};
  log_ = root.parent_path() / ("serve-" + std::to_string(::getpid()) + "-" + root.filename().string() + "-" +
                               std::to_string(serial++) + ".log");
  std::vector<std::string> argv;
  if (!setup.netns.empty()) argv = {"nsenter", "--net=/run/netns/" + setup.netns};
  for (std::string a : {stasis_binary(), std::string("--root"), root.string(), std::string("serve"),
                        std::string("--listen"), setup.address + ":0"})
    argv.push_back(a);
  const bool tls = std::find(setup.options.begin(), setup.options.end(), "--tls-cert") != setup.options.end();
  if (setup.key.empty()) {
    if (!tls) argv.push_back("--plaintext");
  } else {
    argv.push_back("--key");
    argv.push_back(setup.key);
  }
  argv.insert(argv.end(), setup.options.begin(), setup.options.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::setsid();
    if (!setup.fault.empty()) ::setenv("STASIS_FAULT", setup.fault.c_str(), 1);
    if (!setup.fault_pause.empty()) ::setenv("STASIS_FAULT_PAUSE", setup.fault_pause.c_str(), 1);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());  // nsenter execs serve in place: pid_ is serve's
    ::_exit(127);
  }
  const std::regex listening("listening on " + std::regex_replace(setup.address, std::regex("\\."), "\\.") +
                             ":([0-9]+)");
  wait_until(
      [&] {
        std::smatch m;
        const std::string s = log();
        if (!std::regex_search(s, m, listening)) return false;
        port_ = std::stoi(m[1]);
        return true;
      },
      10s);
  address_ = setup.address;
}

Server::~Server() {
  for (const auto& name : names_) run_stasis({"--root", root_.string(), "rm", "-f", name}, 30s);
  stop();
  std::error_code ec;
  std::filesystem::remove(log_, ec);
}

void Server::stop(int sig) {
  if (pid_ <= 0) return;
  ::kill(pid_, sig);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::string Server::log() const {
  std::ifstream in(log_);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

CommandResult Server::stasis(const std::vector<std::string>& args) const {
  std::vector<std::string> all{"--root", root_.string()};
  all.insert(all.end(), args.begin(), args.end());
  return run_stasis(all, 60s);
}

}  // namespace stasis::test
