#include <signal.h>

#include <cstdio>

#include "cli/cli.h"
#include "common/error.h"
#include "common/interrupt.h"
#include "launcher/config.h"
#include "launcher/console.h"
#include "launcher/container.h"
#include "launcher/mounts.h"

namespace stasis::cli {

namespace {

struct RunOptions {
  std::string name, memory, cpus, pids, cpuset, hostname, workdir, net = "loopback", ip, host_ip;
  std::string cgroup_driver = "auto", rootfs, log;
  std::vector<std::string> env, devices, volumes, command;
  std::string subnet;               // --net bridge
  std::vector<std::string> publish;  // --net bridge: -p HOST:CONTAINER[/PROTO]
  bool detach = false, remove = false, init = false;
  bool interactive = false, tty = false;
  std::string detach_keys = launcher::kDefaultDetachKeys;
};

pb::ContainerConfig to_config(const RunOptions& o) {
  pb::ContainerConfig c;
  c.set_name(o.name);
  for (const auto& a : o.command) c.add_argv(a);
  for (const auto& e : o.env) c.add_env(e);
  c.set_workdir(o.workdir);
  c.set_hostname(o.hostname);
  if (!o.memory.empty()) c.set_memory_max(launcher::parse_size(o.memory, "--memory"));
  if (!o.cpus.empty()) {
    size_t end = 0;
    double cpus = 0;
    try {
      cpus = std::stod(o.cpus, &end);
    } catch (const std::exception&) {
      end = 0;
    }
    if (end != o.cpus.size() || !(cpus > 0)) {
      throw UsageError(fmt::format("--cpus: invalid value '{}' (expected a positive number such as 0.5)", o.cpus));
    }
    c.set_cpus(cpus);
  }
  if (!o.pids.empty()) {
    size_t end = 0;
    long long pids = 0;
    try {
      pids = std::stoll(o.pids, &end);
    } catch (const std::exception&) {
      end = 0;
    }
    if (end != o.pids.size() || pids <= 0) {
      throw UsageError(fmt::format("--pids: invalid value '{}' (expected a positive number)", o.pids));
    }
    c.set_pids_max(pids);
  }
  c.set_cpuset(o.cpuset);
  c.mutable_net()->set_mode(o.net);
  c.mutable_net()->set_ip_cidr(o.ip);
  c.mutable_net()->set_host_ip(o.host_ip);
  if (o.net == "bridge" && !o.host_ip.empty()) {
    throw UsageError("--host-ip does not apply to --net bridge (the bridge's address is the gateway)");
  }
  c.mutable_net()->set_subnet(o.subnet);
  for (const auto& p : o.publish) *c.mutable_net()->add_ports() = launcher::parse_port(p, "--publish");
  c.set_cgroup_driver(o.cgroup_driver);
  c.set_rootfs(o.rootfs);
  c.set_log_path(o.log);
  c.set_remove_on_exit(o.remove);
  c.set_init(o.init);
  for (const auto& d : o.devices) c.add_devices(d);
  for (const auto& v : o.volumes) *c.add_mounts() = launcher::parse_volume(v);
  c.set_detach(o.detach);
  c.set_tty(o.tty);
  c.set_interactive(o.interactive);
  return c;
}

int run(const Cli& cli, const RunOptions& o, bool name_given) {
  // An empty --name is a mistake (an unset variable), not a request for a generated name.
  if (name_given && o.name.empty()) throw UsageError("--name: must not be empty (omit it for a generated name)");
  launcher::require_root("stasis run");
  pb::ContainerConfig config = to_config(o);
  const auto detach_keys = launcher::parse_detach_keys(o.detach_keys);  // a mistake there starts nothing
  launcher::StartedContainer started = launcher::run_container(cli.global.root, config);
  if (o.detach) {
    std::printf("%s\n", started.name.c_str());
    return kExitOk;
  }
  // Foreground: what we receive goes to the job's PID 1 (the monitor is in its own session).
  forward_signals_to(started.init_pid);
  if (started.console) {
    // -t: our terminal is the job's (raw, with -i) until the job ends or the user detaches.
    if (launcher::attach_console(started.console->get(), detach_keys, o.interactive) ==
        launcher::AttachEnd::Detached) {
      std::fprintf(stderr, "\nstasis: detached from %s (it runs on: 'stasis attach %s')\n", started.name.c_str(),
                   started.name.c_str());
      return kExitOk;
    }
  }
  // We exit right away: no need to wait for the monitor's own exit.
  return launcher::wait_for_exit(cli.global.root, started, /*reap_monitor=*/false);
}

}  // namespace

void add_run_command(Cli& cli) {
  auto* cmd = cli.app.add_subcommand("run", "Start a job in fresh namespaces and a cgroup");
  auto o = std::make_shared<RunOptions>();
  auto* name = cmd->add_option("--name", o->name, "Container name (generated when absent)");
  cmd->add_flag("-d,--detach", o->detach, "Return once the job runs; its output goes to the log");
  cmd->add_option("--memory", o->memory, "Memory limit in bytes (K, M, G suffixes)");
  cmd->add_option("--cpus", o->cpus, "CPU limit, fractional (CFS quota)");
  cmd->add_option("--pids", o->pids, "Maximum number of processes");
  cmd->add_option("--cpuset", o->cpuset, "CPUs the job may run on (e.g. 0-1)");
  cmd->add_option("--hostname", o->hostname, "Host name inside (default: the container name)");
  cmd->add_option("-e,--env", o->env, "Environment variable KEY=VALUE (repeatable, one each)")->allow_extra_args(false);
  cmd->add_option("-w,--workdir", o->workdir, "Working directory of the job");
  cmd->add_option("-v,--volume", o->volumes, "Bind mount HOST:CONTAINER[:ro] (repeatable)")->allow_extra_args(false);
  cmd->add_option("--net", o->net, "loopback (default), veth, bridge or host");
  cmd->add_option("--ip", o->ip, "--net veth: the container's address, CIDR (e.g. 10.213.0.2/24); --net bridge: "
                  "its address on the bridge (default: the first free one)");
  cmd->add_option("--subnet", o->subnet, "--net bridge: the bridge's subnet when it is created (default 10.88.0.0/16)");
  cmd->add_option("-p,--publish", o->publish, "--net bridge: publish a port, HOST:CONTAINER[/tcp|/udp] (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--host-ip", o->host_ip, "--net veth: the host side's address (default: the subnet's first)");
  cmd->add_option("--cgroup-driver", o->cgroup_driver, "auto (default), v1 or v2");
  cmd->add_option("--rootfs", o->rootfs, "pivot_root into this prepared tree");
  cmd->add_option("--log", o->log, "File for the job's stdout and stderr");
  cmd->add_flag("--rm", o->remove, "Remove the container when the job exits");
  cmd->add_option("--device", o->devices, "Extra allowed device: a path or a rule 'c MAJ:MIN [rwm]' (v1)")->allow_extra_args(false);
  cmd->add_flag("-i,--interactive", o->interactive, "Keep stdin open: what is typed goes to the job (with -t, "
                "through its terminal)");
  cmd->add_flag("-t,--tty", o->tty, "Give the job a pseudo-terminal (its stdio and controlling terminal), copied "
                "to its log; with -d, reach it with 'stasis attach'");
  cmd->add_option("--detach-keys", o->detach_keys, "-it in the foreground: keys that detach from the job, leaving "
                  "it running (default ctrl-p,ctrl-q; \"\" for none)");
  cmd->add_flag("--init", o->init, "Run a small reaper as PID 1 that forwards signals and reaps orphans");
  // Our options end at the command's first word (a "--" before it is optional): cli/main.cc.
  cmd->add_option("command", o->command, "CMD [ARGS...]: the job's command and its arguments");
  cmd->footer(R"(Our options end at the command's first word; a "--" before it is optional.

Examples:
  stasis run python3 -c 'print(1)'
  stasis run -d --name web -e PORT=8000 -w /srv -v /srv/data:/data:ro python3 -m http.server
  stasis run --rootfs /var/lib/images/alpine --memory 256M --rm -- /bin/sh -c 'echo hi'
  stasis run -it --name shell bash        (ctrl-p ctrl-q detaches; 'stasis attach shell' comes back))");
  cmd->callback([&cli, o, name] { cli.action = [&cli, o, name]() -> int { return run(cli, *o, name->count() > 0); }; });
}

}  // namespace stasis::cli
