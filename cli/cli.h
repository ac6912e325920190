// The `stasis` command line: global options and the registration of each command.
// Each command lives in its own cmd_*.cc: it declares its options and sets `action`,
// which main() runs after parsing (so errors are reported the same way for all).
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

namespace stasis::cli {

struct GlobalOptions {
  std::string root = "/run/stasis";  // container state lives here
  bool verbose = false;
  std::string log_file;
  std::string cgroup_parent;  // "": derived from root (launcher::cgroup_parent_for)
};

struct Cli {
  CLI::App app{"stasis: checkpoint, restore and migrate Linux processes and containers", "stasis"};
  GlobalOptions global;
  std::function<int()> action;  // set by the chosen command's callback
};

// Throws Error(kExitNotImplemented) naming the command: for declared, unbuilt commands.
[[noreturn]] void not_implemented(const std::string& command);

void add_run_command(Cli& cli);
void add_ps_command(Cli& cli);
void add_exec_command(Cli& cli);
void add_attach_command(Cli& cli);
void add_logs_command(Cli& cli);
void add_kill_command(Cli& cli);
void add_rm_command(Cli& cli);
void add_stop_command(Cli& cli);
void add_wait_command(Cli& cli);
void add_inspect_command(Cli& cli);
void add_freeze_commands(Cli& cli);  // freeze and thaw
void add_dump_command(Cli& cli);
void add_restore_command(Cli& cli);
void add_show_command(Cli& cli);
void add_check_command(Cli& cli);
void add_serve_command(Cli& cli);
void add_migrate_command(Cli& cli);
void add_swrk_command(Cli& cli);  // CRIU's service mode (criu/swrk.h), hidden from the help

}  // namespace stasis::cli
