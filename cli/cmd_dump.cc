// `stasis dump NAME -D DIR` and `stasis dump --pid PID -D DIR` (docs/dump.md).
#include <cstdio>
#include <memory>

#include "cli/cli.h"
#include "common/error.h"
#include "common/progress.h"
#include "dump/dump.h"
#include "images/page_file.h"
#include "launcher/config.h"

namespace stasis::cli {

namespace {

constexpr uint64_t kMaxGhostLimit = 480ull << 20;

struct DumpArgs {
  std::string name;
  pid_t pid = 0;
  std::string dir;
  bool leave_running = false;
  bool tcp_established = false;
  bool shell_job = false;
  bool quiet = false;
  std::string compression = "lz4";
  std::string ghost_limit = "64M";
  std::string tmpfs_limit = "64M";
  bool pre_dump = false;
  std::string parent;
};

}  // namespace

void add_dump_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("dump", "Checkpoint a container or a process tree into a directory");
  auto a = std::make_shared<DumpArgs>();
  cmd->add_option("name", a->name, "Container to dump (started by `stasis run`)");
  cmd->add_option("--pid", a->pid, "Dump this process and all its descendants instead (not started by stasis; ptrace only)");
  cmd->add_option("-D,--dir,--images-dir", a->dir, "Checkpoint directory (created; must not exist or be empty)")->required();
  cmd->add_flag("--leave-running", a->leave_running, "Resume the job after the dump instead of killing it");
  cmd->add_flag("--tcp-established", a->tcp_established,
                "Checkpoint established TCP connections (TCP_REPAIR; their packets are dropped from the dump to the "
                "end of the restore, so that the peer keeps the connection)");
  cmd->add_flag("--shell-job", a->shell_job,
                "With --pid: the process is on the terminal of the shell it was started from; save that terminal's "
                "state, and the restored job gets a new terminal (attached as `stasis run -t` does)");
  cmd->add_flag("-q,--quiet", a->quiet, "Print no progress and no summary (errors and warnings still go to stderr)");
  cmd->add_option("--compression,--compress", a->compression, "Page compression: none, lz4 or zstd")
      ->capture_default_str();
  cmd->add_option("--ghost-limit", a->ghost_limit,
                  "Most data saved per deleted file or memfd, holes not counted (K, M, G suffixes; at most 480M)")
      ->capture_default_str();
  cmd->add_option("--tmpfs-limit", a->tmpfs_limit,
                  "Most file data saved per tmpfs the container's job mounted (K, M, G suffixes)")
      ->capture_default_str();
  cmd->add_flag("--pre-dump", a->pre_dump,
                "Save the memory only, the job running on, and track what it writes from here (for the next dump "
                "with --parent)");
  cmd->add_option("--parent", a->parent,
                  "Save only the pages written since the dump in this checkpoint directory (a --pre-dump); the new "
                  "checkpoint refers to it for the others");
  cmd->footer(R"(Examples:
  stasis dump web -D /var/lib/ckpt/web                  checkpoint, then end the job
  stasis dump web -D /var/lib/ckpt/web --leave-running  checkpoint, the job goes on
  stasis dump --pid 4242 -D /tmp/ckpt --compression zstd
  stasis dump web -D /tmp/web.1 --pre-dump              memory only, the job runs on
  stasis dump web -D /tmp/web.2 --parent /tmp/web.1     only what changed since)");
  cmd->callback([&cli, a] {
    cli.action = [&cli, a]() -> int {
      if (a->name.empty() == (a->pid == 0))
        throw UsageError("stasis dump: give either a container NAME or --pid PID (exactly one)");
      if (a->shell_job && !a->name.empty())
        throw UsageError("stasis dump: --shell-job is for --pid: a container's terminal (stasis run -t) is saved anyway");
      if (a->quiet) progress::set_enabled(false);
      dump::DumpOptions o;
      o.container = a->name;
      o.pid = a->pid;
      o.dir = a->dir;
      o.state_root = cli.global.root;
      o.leave_running = a->leave_running;
      o.pre_dump = a->pre_dump;
      o.parent = a->parent;
      o.tcp_established = a->tcp_established;
      o.shell_job = a->shell_job;
      o.compression = images::parse_compression(a->compression);
      const int64_t ghost_limit = launcher::parse_size(a->ghost_limit, "--ghost-limit");
      // Each file's data is one image record, whose size is bounded (images/format.h).
      if (ghost_limit < 0 || static_cast<uint64_t>(ghost_limit) > kMaxGhostLimit)
        throw UsageError(fmt::format("--ghost-limit {}: at most {} MiB", a->ghost_limit, kMaxGhostLimit >> 20));
      o.ghost_limit = static_cast<uint64_t>(ghost_limit);
      const int64_t tmpfs_limit = launcher::parse_size(a->tmpfs_limit, "--tmpfs-limit");
      if (tmpfs_limit < 0) throw UsageError(fmt::format("--tmpfs-limit {}: not a size", a->tmpfs_limit));
      o.tmpfs_limit = static_cast<uint64_t>(tmpfs_limit);
      dump::DumpReport r = dump::dump(o);
      if (!a->quiet) std::fputs(dump::format_report(o, r).c_str(), stdout);
      return 0;
    };
  });
}

}  // namespace stasis::cli
