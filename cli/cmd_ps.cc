#include <chrono>
#include <cstdio>

#include <fmt/format.h>

#include "cli/cli.h"
#include "common/error.h"
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

struct PsOptions {
  bool all = false, quiet = false, json = false;
  std::string format = "table";
};

int ps(const Cli& cli, const PsOptions& o) {
  if (o.format != "table" && o.format != "json") {
    throw UsageError(fmt::format("--format '{}': expected table or json", o.format));
  }
  const bool json = o.json || o.format == "json";
  std::vector<pb::ContainerState> states;
  if (std::filesystem::exists(cli.global.root)) {
    for (auto& s : launcher::StateStore(cli.global.root).list()) {
      // By default, as docker: containers whose job (or monitor) still exists; -a adds the others.
      if (o.all || launcher::container_alive(s)) states.push_back(std::move(s));
    }
  }
  if (o.quiet) {
    for (const auto& s : states) std::printf("%s\n", s.config().name().c_str());
    return 0;
  }
  if (json) {
    std::string out = "[";
    for (size_t i = 0; i < states.size(); ++i) {
      std::string entry = launcher::state_to_json(launcher::state_for_display(states[i]));
      while (!entry.empty() && entry.back() == '\n') entry.pop_back();
      out += (i ? ",\n" : "\n") + entry;
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
  auto* cmd = cli.app.add_subcommand("ps", "List containers (those still running; -a for all)");
  auto o = std::make_shared<PsOptions>();
  cmd->add_flag("-a,--all", o->all, "Also list containers whose job has ended (they stay until `stasis rm`)");
  cmd->add_flag("-q,--quiet", o->quiet, "Print names only, one a line");
  cmd->add_option("--format", o->format, "table or json (an array of what `stasis inspect` prints)")
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "Same as --format json");
  cmd->footer(R"(By default ps lists the containers whose job or monitor still exists (running, frozen,
being restored); -a adds those that have ended (exited, killed), which stay until `stasis rm`.

Examples:
  stasis ps -a
  stasis ps -aq | xargs stasis rm
  stasis ps --format json)");
  cmd->callback([&cli, o] { cli.action = [&cli, o]() -> int { return ps(cli, *o); }; });
}

}  // namespace stasis::cli
