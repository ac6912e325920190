// `stasis attach NAME`: the user's terminal connected to a -t job's (launcher/console.h).
#include <cstdio>

#include "cli/cli.h"
#include "common/error.h"
#include "launcher/console.h"
#include "launcher/container.h"
#include "launcher/state_store.h"

namespace stasis::cli {

namespace {

struct AttachOptions {
  std::string name;
  std::string detach_keys = launcher::kDefaultDetachKeys;
  bool no_stdin = false;
};

int attach(const Cli& cli, const AttachOptions& o) {
  launcher::require_root("stasis attach");
  const auto keys = launcher::parse_detach_keys(o.detach_keys);
  UniqueFd connection = launcher::connect_console(cli.global.root, o.name);
  const pb::ContainerConfig config = launcher::StateStore(cli.global.root).load(o.name).config();
  // Without -t (a -d -i job): its stdin is a pipe, its output goes to its log, followed here.
  const std::string follow_log = config.tty() ? "" : config.log_path();
  if (launcher::attach_console(connection.get(), keys, config.interactive() && !o.no_stdin, follow_log) ==
      launcher::AttachEnd::Detached) {
    std::fprintf(stderr, "\nstasis: detached from %s (it runs on)\n", o.name.c_str());
    return kExitOk;
  }
  // The job has ended: its status, as `stasis run` in the foreground would have returned.
  try {
    return launcher::wait_container(cli.global.root, o.name);
  } catch (const Error&) {
    return kExitOk;  // removed meanwhile (--rm): nothing more to say
  }
}

}  // namespace

void add_attach_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("attach", "Connect the terminal to a running -t job's terminal (or a -d -i job's stdin)");
  auto o = std::make_shared<AttachOptions>();
  cmd->add_option("name", o->name, "Container name")->required();
  cmd->add_option("--detach-keys", o->detach_keys,
                  "Keys that detach, leaving the job running (default ctrl-p,ctrl-q; \"\" for none)");
  cmd->add_flag("--no-stdin", o->no_stdin, "Only watch: what is typed does not go to the job");
  cmd->footer(R"(The job must have been started with -t, or with -d -i. With -t and -i what is typed goes to it,
our terminal being in raw mode meanwhile (ctrl-c goes to the job). With -d -i and no -t, what is
typed goes to its stdin (a pipe; the end of our input closes it), its output is followed in its
log, and ctrl-c detaches. Several clients may be attached at once; each sees the job's output
from the moment it attaches ('stasis logs' has what came before). attach exits with the job's
status when it ends, or 0 when detached.

Examples:
  stasis run -dit --name shell bash && stasis attach shell
  stasis attach --detach-keys ctrl-x,x shell
  stasis attach --no-stdin shell)");
  cmd->callback([&cli, o] { cli.action = [&cli, o]() -> int { return attach(cli, *o); }; });
}

}  // namespace stasis::cli
