#include <chrono>
#include <cstdio>

#include <fmt/format.h>

#include "cli/cli.h"
#include "launcher/container.h"
#include "launcher/state_store.h"

namespace stasis::cli {

namespace {

std::string age(int64_t created_ns) {
  int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  int64_t s = (now - created_ns) / 1000000000;
  if (s < 0) s = 0;
  if (s < 120) return fmt::format("{}s", s);
  if (s < 7200) return fmt::format("{}m", s / 60);
  if (s < 172800) return fmt::format("{}h", s / 3600);
  return fmt::format("{}d", s / 86400);
}

std::string limits(const pb::ContainerConfig& c) {
  std::string out;
  auto add = [&](const std::string& s) { out += (out.empty() ? "" : ",") + s; };
  if (c.memory_max()) add(fmt::format("mem={}", c.memory_max()));
  if (c.cpus() > 0) add(fmt::format("cpus={}", c.cpus()));
  if (c.pids_max()) add(fmt::format("pids={}", c.pids_max()));
  if (!c.cpuset().empty()) add("cpuset=" + c.cpuset());
  return out.empty() ? "-" : out;
}

int ps(const Cli& cli, bool json) {
  if (!std::filesystem::exists(cli.global.root)) {
    std::printf(json ? "[]\n" : "NAME STATUS PID AGE CGROUP LIMITS\n");
    return 0;
  }
  launcher::StateStore store(cli.global.root);
  auto states = store.list();
  if (json) {
    std::string out = "[";
    for (size_t i = 0; i < states.size(); ++i) {
      states[i].set_display_status(launcher::display_status(states[i]));
      out += (i ? ",\n" : "\n") + launcher::state_to_json(states[i]);
    }
    out += states.empty() ? "]\n" : "\n]\n";
    std::fputs(out.c_str(), stdout);
    return 0;
  }
  std::printf("%-24s %-20s %-8s %-5s %-6s %s\n", "NAME", "STATUS", "PID", "AGE", "CGROUP", "LIMITS");
  for (const auto& s : states) {
    std::printf("%-24s %-20s %-8d %-5s %-6s %s\n", s.config().name().c_str(), launcher::display_status(s).c_str(),
                s.init_pid(), age(s.created_unix_ns()).c_str(), s.config().cgroup_driver().c_str(),
                limits(s.config()).c_str());
  }
  return 0;
}

}  // namespace

void add_ps_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("ps", "List containers");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "Print the state of every container as JSON");
  cmd->callback([&cli, json] { cli.action = [&cli, json]() -> int { return ps(cli, *json); }; });
}

}  // namespace stasis::cli
