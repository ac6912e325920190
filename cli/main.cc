#include <cstdio>
#include <cstdlib>

#include "cli/cli.h"
#include "common/error.h"
#include "common/log.h"
#include "common/version.h"

namespace stasis::cli {

[[noreturn]] void not_implemented(const std::string& command) {
  throw Error(fmt::format("'stasis {}' is not implemented yet", command), kExitNotImplemented);
}

namespace {

int run_main(int argc, char** argv) {
  Cli cli;
  CLI::App& app = cli.app;
  app.set_version_flag("--version", std::string(kVersion));
  app.add_option("--root", cli.global.root, "Directory where container state lives")->capture_default_str();
  app.add_flag("-v,--verbose", cli.global.verbose, "Print details of every step");
  app.add_option("--log-file", cli.global.log_file, "Also write the log to this file");
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the command name
  app.failure_message(CLI::FailureMessage::help);

  add_run_command(cli);
  add_ps_command(cli);
  add_exec_command(cli);
  add_kill_command(cli);
  add_rm_command(cli);
  add_freeze_commands(cli);
  add_dump_command(cli);
  add_restore_command(cli);
  add_show_command(cli);
  add_check_command(cli);
  add_serve_command(cli);
  add_migrate_command(cli);

  try {
    app.parse(argc, argv);
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
