#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/cli.h"
#include "common/error.h"
#include "common/log.h"
#include "common/version.h"
#include "criu/as_criu.h"
#include "launcher/config.h"

namespace stasis::cli {

[[noreturn]] void not_implemented(const std::string& command) {
  throw Error(fmt::format("'stasis {}' is not implemented yet", command), kExitNotImplemented);
}

namespace {

// Where the first argument that is not a global option or its value is: the command's name,
// if any (0 when there is none).
int command_index(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--root" || a == "--log-file" || a == "--cgroup-parent") {
      ++i;  // its value
      continue;
    }
    if (a == "--") return 0;
    if (!a.empty() && a[0] != '-') return i;
  }
  return 0;
}

// `stasis run [OPTIONS] CMD ARGS...`: the command's own options end at the first word of the
// job's command, as with docker; a "--" goes before that word so that CLI11 reads the job's
// options (`python3 -c ...`) as the job's. `skip` words come first (exec's NAME).
std::vector<char*> separate_command(CLI::App& cmd, const CLI::App& app, std::vector<char*> args, size_t from,
                                    int skip) {
  static char separator[] = "--";
  auto takes_value = [&](const std::string& name) {
    const CLI::Option* opt = cmd.get_option_no_throw(name);
    if (!opt) opt = app.get_option_no_throw(name);
    return opt && opt->get_expected_max() > 0;  // flags expect none
  };
  for (size_t i = from; i < args.size(); ++i) {
    std::string a = args[i];
    if (a == "--") return args;
    if (a.size() > 1 && a[0] == '-') {
      if (a[1] == '-') {
        if (a.find('=') == std::string::npos && takes_value(a) && i + 1 < args.size()) ++i;
      } else {
        // -dv X: flags, then perhaps one option whose value is the next word or the rest.
        for (size_t c = 1; c < a.size(); ++c) {
          if (takes_value(std::string("-") + a[c])) {
            if (c + 1 == a.size() && i + 1 < args.size()) ++i;
            break;
          }
        }
      }
      continue;
    }
    if (skip-- > 0) continue;
    args.insert(args.begin() + static_cast<std::ptrdiff_t>(i), separator);
    return args;
  }
  return args;
}

int run_main(int argc, char** argv) {
  if (auto code = criu::run_as_criu(argc, argv)) return *code;  // run as `criu` (docs/criu.md)
  Cli cli;
  CLI::App& app = cli.app;
  app.set_version_flag("--version", fmt::format("stasis {} (commit {})", kVersion, STASIS_GIT_COMMIT));
  app.add_option("--root", cli.global.root, "Directory where container state lives")->capture_default_str();
  app.add_option("--cgroup-parent", cli.global.cgroup_parent,
                 "Cgroup (below each hierarchy's root) under which containers are made "
                 "(default: stasis for the default root, stasis-<hash of the root> for another)");
  app.add_flag("-v,--verbose", cli.global.verbose, "Print details of every step");
  app.add_option("--log-file", cli.global.log_file, "Also write the log to this file");
  app.require_subcommand(1);
  app.footer(R"(Run 'stasis COMMAND --help' for a command's options and examples.

Examples:
  stasis run -d --name web python3 -m http.server 8000
  stasis dump web -D /tmp/web && stasis restore -D /tmp/web -d
  stasis ps -a)");
  app.fallthrough();  // global options may follow the command name
  app.failure_message(CLI::FailureMessage::help);

  // CLI11 builds every option of every command it is given (~0.2 ms, paid by each `stasis
  // run`): only the named command is added; help and mistakes get them all.
  const std::vector<std::pair<std::vector<std::string_view>, void (*)(Cli&)>> commands = {
      {{"run"}, add_run_command},         {{"ps"}, add_ps_command},
      {{"inspect"}, add_inspect_command}, {{"stop"}, add_stop_command},
      {{"wait"}, add_wait_command},       {{"exec"}, add_exec_command},
      {{"attach"}, add_attach_command},   {{"logs"}, add_logs_command},
      {{"kill"}, add_kill_command},       {{"rm"}, add_rm_command},
      {{"freeze", "thaw"}, add_freeze_commands},
      {{"dump"}, add_dump_command},       {{"restore"}, add_restore_command},
      {{"show"}, add_show_command},       {{"check"}, add_check_command},
      {{"serve"}, add_serve_command},     {{"migrate"}, add_migrate_command},
      {{"swrk"}, add_swrk_command},
  };
  const int named_at = command_index(argc, argv);
  std::string_view named = named_at ? argv[named_at] : "";
  auto wanted = std::find_if(commands.begin(), commands.end(), [&](const auto& command) {
    return std::find(command.first.begin(), command.first.end(), named) != command.first.end();
  });
  std::vector<char*> args(argv, argv + argc);
  if (wanted != commands.end()) {
    wanted->second(cli);
    if (named == "run" || named == "exec") {
      args = separate_command(*app.get_subcommand(std::string(named)), app, std::move(args),
                              static_cast<size_t>(named_at) + 1, named == "exec" ? 1 : 0);
    }
  } else {
    for (const auto& [names, add] : commands) add(cli);
    if (!named.empty()) {
      std::fprintf(stderr, "stasis: unknown command '%.*s' (see 'stasis --help' for the list)\n",
                   static_cast<int>(named.size()), named.data());
      return kExitUsage;
    }
  }

  try {
    app.parse(static_cast<int>(args.size()), args.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  log::set_level(cli.global.verbose ? log::Level::Debug : log::Level::Info);
  if (!cli.global.log_file.empty()) log::set_file(cli.global.log_file);
  if (!cli.action) return kExitUsage;
  try {
    launcher::set_cgroup_parent(cli.global.cgroup_parent);
    return cli.action();
  } catch (const Error& e) {
    log::error("{}", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    log::error("{}", e.what());
    return kExitFailure;
  }
}

}  // namespace
}  // namespace stasis::cli

int main(int argc, char** argv) {
  int code = stasis::cli::run_main(argc, argv);
#if !defined(__SANITIZE_ADDRESS__)
  // All our resources were released when run_main returned; what static destructors would
  // free (protobuf's and CLI11's tables) the kernel frees faster. Saves ~0.2 ms per command.
  std::fflush(nullptr);
  std::_Exit(code);
#endif
  return code;
}
