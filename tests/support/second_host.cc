#include "tests/support/second_host.h"

#include <sys/stat.h>
#include <unistd.h>

#include <csignal>

#include "launcher/state_store.h"
#include "tests/support/checkpoint_harness.h"

namespace stasis::test {

NetNamespace::NetNamespace(const std::string& tag) : name_("stasis-" + tag + "-" + std::to_string(::getpid())) {
  CommandResult r = run_command({"ip", "netns", "add", name_}, std::chrono::seconds(20));
  made_ = r.exit_code == 0;
  error_ = r.out + r.err;
}

NetNamespace::~NetNamespace() {
  if (made_) run_command({"ip", "netns", "del", name_}, std::chrono::seconds(20));
}

::testing::AssertionResult NetNamespace::ready() const {
  if (made_) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "ip netns add " << name_ << " failed: " << error_;
}

CommandResult NetNamespace::sh(const std::string& script, std::chrono::milliseconds timeout) const {
  return run_command({"nsenter", "--net=" + path(), "sh", "-c", script}, timeout);
}

std::string NetNamespace::net_id() const {
  struct stat st {};
  if (::stat(path().c_str(), &st) != 0) return "";
  return "net:[" + std::to_string(st.st_ino) + "]";
}

SecondHost::~SecondHost() {
  for (const auto& name : names_) {
    std::optional<pid_t> pid = init_pid(name);
    stasis({"rm", "-f", name}, std::chrono::seconds(30));
    if (pid && process_alive(*pid)) {
      ::kill(*pid, SIGKILL);
      wait_until([&] { return !process_alive(*pid); }, std::chrono::seconds(10));
    }
  }
}

CommandResult SecondHost::stasis(const std::vector<std::string>& args, std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv{"nsenter", "--net=" + netns_.path(), stasis_binary(), "--root", root_.path().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, timeout);
}

CommandResult SecondHost::restore(const std::filesystem::path& dir, const std::string& name,
                                  const std::vector<std::string>& options) {
  names_.push_back(name);
  std::vector<std::string> args{"restore", "-D", dir.string(), "--name", name, "-d"};
  args.insert(args.end(), options.begin(), options.end());
  return stasis(args, std::chrono::seconds(120));
}

CommandResult SecondHost::make_container(const std::vector<std::string>& args, const std::string& name) {
  names_.push_back(name);
  return stasis(args, std::chrono::seconds(60));
}

std::optional<pid_t> SecondHost::init_pid(const std::string& name) const {
  auto state = launcher::StateStore(root_.path()).try_load(name);
  if (!state || state->init_pid() <= 0) return std::nullopt;
  return state->init_pid();
}

}  // namespace stasis::test
