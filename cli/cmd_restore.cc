#include "cli/cli.h"
#include "common/error.h"
#include "common/log.h"
#include "common/progress.h"
#include "restore/restore.h"

namespace stasis::cli {

void add_restore_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("restore", "Restore a checkpoint as a running container");
  auto options = std::make_shared<restore::RestoreOptions>();
  auto dir = std::make_shared<std::string>();
  cmd->add_option("-D,--dir,--images-dir", *dir, "Checkpoint directory written by `stasis dump`")->required();
  auto* name = cmd->add_option("--name", options->name, "Name of the restored container (default: the dumped one's)");
  cmd->add_flag("-d,--detach", options->detach, "Return once the job runs again instead of waiting for it");
  auto quiet = std::make_shared<bool>(false);
  cmd->add_flag("-q,--quiet", *quiet, "Print no progress and no summary (errors and warnings still go to stderr)");
  cmd->add_option("--log", options->log_path, "File for the job's output (default: the dumped container's log)");
  cmd->add_option("--inherit-fd", options->inherit_fds,
                  "Connect the job's end of a pipe whose other end was outside it, SOURCE:pipe:[INODE], to SOURCE: "
                  "fd[N] (fd N of this command) or a file path (read, or appended to); repeatable");
  cmd->add_option("--allow-changed-file", options->allow_changed_files,
                  "Reopen this file (path in the job) although it changed since the dump, at the dumped offset; "
                  "repeatable")
      ->allow_extra_args(false);
  cmd->add_option("--ip", options->ip, "--net veth: the container's new address, CIDR (default: the dumped one's); --net bridge: its new address on the bridge");
  cmd->add_option("--host-ip", options->host_ip,
                  "--net veth: the host side's new address (default: the subnet's first)");
  cmd->footer(R"(Examples:
  stasis restore -D /var/lib/ckpt/web
  stasis restore -D /var/lib/ckpt/web -d --name web2 --ip 10.213.0.3/24
  stasis restore --dir /tmp/ckpt --inherit-fd 'fd[0]:pipe:[123456]')");
  cmd->callback([&cli, options, dir, name, quiet] {
    cli.action = [&cli, options, dir, name, quiet]() -> int {
      // The summary is logged at info level; -v (debug) still shows everything.
      if (*quiet && log::level() == log::Level::Info) log::set_level(log::Level::Warn);
      if (*quiet) progress::set_enabled(false);
      if (name->count() > 0 && options->name.empty())
        throw UsageError("--name: must not be empty (omit it to keep the dumped container's name)");
      options->dir = *dir;
      options->root = cli.global.root;
      return restore::restore_checkpoint(*options);
    };
  });
}

}  // namespace stasis::cli
