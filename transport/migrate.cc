#include "transport/migrate.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "common/error.h"
#include "common/fault.h"
#include "common/fd.h"
#include "common/features.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proc.h"
#include "dump/dirty_tracking.h"
#include "dump/dump.h"
#include "launcher/container.h"
#include "launcher/net_lock.h"
#include "transport/wire.h"

namespace stasis::transport {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// A peer silent this long (a cut link, a host gone) fails the migration.
constexpr unsigned kLivenessSeconds = 12;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The source's staging folder, removed however the migration ends.
struct Staging {
  fs::path dir;
  Staging() {
    std::string tmpl = (fs::temp_directory_path() / "stasis-migrate-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) fail_errno(errno, "create a staging folder {}", tmpl);
    dir = tmpl;
  }
  ~Staging() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

// Thaws the frozen source unless the destination took the job (or might have); first lets
// its TCP connections go again (the network lock the final dump left).
struct ThawUnlessReleased {
  const fs::path& root;
  const std::string& name;
  bool active = true;
  std::string network_lock;  // the table, in the namespace of pid
  pid_t pid = 0;
  ~ThawUnlessReleased() {
    if (!active) return;
    if (!network_lock.empty()) {
      try {
        launcher::remove_lock(network_lock, proc::open_namespace(pid, "net").get());
      } catch (const std::exception& e) {
        log::error("could not remove the network lock of container {} (nftables table inet {}): {}; its TCP "
                   "connections stay silent until it is removed",
                   name, network_lock, e.what());
      }
    }
    try {
      launcher::thaw_container(root, name);
      log::info("container {} runs on here", name);
    } catch (const std::exception& e) {
      log::error("could not thaw container {} again: {}", name, e.what());
    }
  }
};

// A migration that fails leaves the job as it was: not tracked (dump/dirty_tracking.h).
struct EndTracking {
  const fs::path& root;
  std::vector<pid_t> pids;  // every process of the job that a round tracks
  ~EndTracking() {
    for (pid_t pid : pids) dump::end_dirty_tracking(root, pid);
  }
};

// The last dump, the job frozen: its refusal says what the user of migrate can do about it.
dump::DumpReport final_dump(const dump::DumpOptions& o, const MigrateOptions& opt) {
  try {
    return dump::dump(o);
  } catch (const Error& e) {
    const std::string what = e.what();
    const bool tcp = !opt.tcp_established && what.find("--tcp-established") != std::string::npos;
    throw Error(fmt::format("migrate {}: the final dump failed: {}{}", opt.name, what,
                            tcp ? " (stasis migrate takes --tcp-established too, to move the job's connections)" : ""),
                e.exit_code());
  }
}

// Whether this kernel lets the pre-copy track what the job writes; when not, says so and
// that the job is moved by stop-and-copy instead.
bool can_track_writes(const MigrateOptions& opt) {
  features::FeatureResult tracking = features::probe_feature("dirty-tracking");
  if (fault_active("migrate-no-dirty-tracking")) {  // tests: the kernels without it
    tracking.ok = false;
    tracking.detail = "taken as missing (STASIS_FAULT)";
  }
  if (tracking.ok) return true;
  if (opt.json)
    std::printf("{\"event\":\"stop_and_copy\",\"reason\":%s}\n",
                json_string("this kernel cannot track the job's writes: " + tracking.detail).c_str());
  else
    std::printf("this kernel cannot track the job's writes (%s): no pre-copy, %s is moved by stop-and-copy, stopped "
                "for the whole copy (`stasis check` lists what the kernel lacks)\n",
                tracking.detail.c_str(), opt.name.c_str());
  std::fflush(stdout);
  return false;
}

}  // namespace

int migrate(const MigrateOptions& opt) {
  const auto t_start = Clock::now();
  const tcp::endpoint to = parse_endpoint(opt.to, "--to");
  boost::asio::io_context io;
  tcp::socket socket(io);
  boost::system::error_code ec;
  socket.connect(to, ec);
  if (ec) fail("connect to {}: {} (is `stasis serve` running there?)", opt.to, ec.message());
  socket.set_option(tcp::no_delay(true));
  set_liveness(socket, kLivenessSeconds);
  Channel channel(std::move(socket));
  if (opt.tls) {
    try {
      channel.start_tls(*opt.tls, /*server=*/false);
    } catch (const boost::system::system_error& e) {
      fail("migrate {} to {}: the TLS handshake failed ({}): the destination's certificate must be signed by "
           "the CA of --tls-ca, and it must accept ours; nothing was sent, {} runs on here",
           opt.name, opt.to, e.code().message(), opt.name);
    }
  }
  try {
    channel.open_client(opt.key);
  } catch (const boost::system::system_error& e) {
    // serve drops a client it will not take without a word: say what it may have refused.
    const bool dropped = e.code() == boost::asio::error::eof || e.code() == boost::asio::error::connection_reset;
    fail("migrate {} to {}: the connection failed while opening ({}){}; {} runs on here", opt.name, opt.to,
         e.code().message(),
         dropped ? ": the destination's serve runs in another mode (--key, TLS or --plaintext) or is another "
                   "stasis version, its log says which"
                 : "",
         opt.name);
  }

  Staging staging;
  EndTracking end_tracking{opt.state_root, {}};
  uint64_t wire = 0;
  int round = 0;
  fs::path parent;
  uint64_t last_round = UINT64_MAX;
  uint64_t precopy_bytes = 0;
  double precopy_s = 0;
  dump::DumpOptions o;
  o.container = opt.name;
  o.state_root = opt.state_root;
  o.compression = opt.compression;
  try {
    // Pre-copy while the job runs.
    const int max_rounds = opt.max_rounds > 0 && can_track_writes(opt) ? opt.max_rounds : 0;
    while (round < max_rounds) {
      ++round;
      o.pre_dump = true;
      o.parent = parent;
      o.dir = staging.dir / std::to_string(round);
      const auto t = Clock::now();
      dump::DumpReport r = dump::dump(o);
      for (pid_t pid : r.tracked_pids)
        if (std::find(end_tracking.pids.begin(), end_tracking.pids.end(), pid) == end_tracking.pids.end())
          end_tracking.pids.push_back(pid);
      const uint64_t sent = channel.send_directory(o.dir, std::to_string(round));
      wire += sent;
      const uint64_t held = r.pages.raw_bytes;
      const double seconds = since(t);
      // The rate of this round (dump and send of what it held) prices the final round, which
      // holds about what the job wrote meanwhile: at most this round's pages.
      precopy_bytes += held;
      precopy_s += seconds;
      const double rate = precopy_s > 0 ? static_cast<double>(precopy_bytes) / precopy_s : 0;
      const double estimate_ms = rate > 0 ? 1000.0 * static_cast<double>(held) / rate : 0;
      if (opt.json)
        std::printf("{\"event\":\"round\",\"round\":%d,\"memory_bytes\":%llu,\"bytes_sent\":%llu,\"seconds\":%.3f,"
                    "\"stopped_s\":%.3f,\"rate_bytes_s\":%.0f,\"estimated_downtime_ms\":%.1f}\n",
                    round, static_cast<unsigned long long>(held), static_cast<unsigned long long>(sent), seconds,
                    r.frozen_s, rate, estimate_ms);
      else
        std::printf("round %d: %.1f MiB of memory%s, %.1f MiB sent in %.3f s (job stopped %.3f s), %.0f MiB/s, "
                    "estimated downtime %.0f ms\n",
                    round, held / 1048576.0, round == 1 ? "" : " written since the last round", sent / 1048576.0,
                    seconds, r.frozen_s, rate / 1048576.0, estimate_ms);
      std::fflush(stdout);
      parent = o.dir;
      if (opt.max_downtime_ms > 0) {
        // The goal given: stop as soon as the last round's pages would go within it.
        if (estimate_ms <= opt.max_downtime_ms) break;
        if (round > 1 && held >= last_round) break;  // not converging: more rounds would not help
      } else if (round > 1 && (held < opt.small_bytes || held >= last_round)) {
        break;
      }
      last_round = held;
    }
  } catch (const boost::system::system_error& e) {
    fail("migrate {} to {}: the connection failed during pre-copy ({}); {} runs on here", opt.name, opt.to,
         e.code().message(), opt.name);
  }

  // Stop and copy: frozen from here until the destination runs it (or refuses).
  const auto t_freeze = Clock::now();
  launcher::freeze_container(opt.state_root, opt.name);
  ThawUnlessReleased thaw{opt.state_root, opt.name, true, "", 0};
  o.pre_dump = false;
  o.leave_running = true;  // left frozen: it was paused for the dump
  // Its connections must stay silent here (no reply, no FIN or RST when it is removed) once
  // the destination has them: the lock stays until then.
  o.tcp_established = opt.tcp_established;
  o.keep_network_lock = opt.tcp_established;
  o.parent = parent;
  o.dir = staging.dir / "final";
  std::string answer;
  double dump_s = 0, send_s = 0;
  try {
    dump::DumpReport r = final_dump(o, opt);
    thaw.network_lock = r.network_lock;
    thaw.pid = r.host_pid;
    dump_s = since(t_freeze);
    const auto t_send = Clock::now();
    const uint64_t sent = channel.send_directory(o.dir, "final");
    wire += sent;
    if (opt.json)
      std::printf("{\"event\":\"final\",\"memory_bytes\":%llu,\"bytes_sent\":%llu}\n",
                  static_cast<unsigned long long>(r.pages.raw_bytes), static_cast<unsigned long long>(sent));
    else
      std::printf("final: %.1f MiB of memory%s and the job's state, %.1f MiB sent\n", r.pages.raw_bytes / 1048576.0,
                  round > 0 ? " written since the last round" : "", sent / 1048576.0);
    std::fflush(stdout);
    channel.send_frame(FrameKind::Restore, "final\n" + opt.name);
    // The destination says all arrived and passed; only after our GO does it restore, so a
    // connection lost before GO is sent leaves the job to us alone.
    Frame ready = channel.read_frame();
    if (ready.kind == FrameKind::Result)
      fail("migrate {}: the destination {} refused the checkpoint: {}", opt.name, opt.to, ready.text);
    if (ready.kind != FrameKind::Ready)
      fail("migrate {}: the destination answered with a frame of kind {}", opt.name, static_cast<int>(ready.kind));
    send_s = since(t_send);
  } catch (const boost::system::system_error& e) {
    fail("migrate {} to {}: the connection failed while sending the final state ({}); {} runs on here", opt.name,
         opt.to, e.code().message(), opt.name);
  }
  try {
    channel.send_frame(FrameKind::Go, "");
    Frame f = channel.read_frame();
    if (f.kind != FrameKind::Result) fail("migrate {}: the destination answered with a frame of kind {}", opt.name,
                                          static_cast<int>(f.kind));
    answer = f.text;
  } catch (const std::exception& e) {
    // The destination may have started the job: never run it twice.
    thaw.active = false;
    const auto* sys = dynamic_cast<const boost::system::system_error*>(&e);
    fail("migrate {} to {}: no answer after the restore was asked for ({}): the destination may run it; here it is "
         "left frozen (`stasis thaw {}` to run it here, `stasis rm -f {}` to drop it){}",
         opt.name, opt.to, sys ? sys->code().message() : std::string(e.what()), opt.name, opt.name,
         thaw.network_lock.empty()
             ? ""
             : fmt::format("; its TCP connections are held silent here by the nftables table inet {} in its "
                           "network namespace: remove that table (`nft delete table inet {}` there) before a thaw",
                           thaw.network_lock, thaw.network_lock));
  }
  if (answer != "ok") fail("migrate {}: the destination {} could not restore it: {}", opt.name, opt.to, answer);
  const double downtime = since(t_freeze);
  thaw.active = false;
  try {
    launcher::remove_container(opt.state_root, opt.name, /*force=*/true);
  } catch (const Error& e) {
    throw Error(fmt::format("migrate {}: it runs on {} now, but removing the frozen copy here failed: {}", opt.name,
                            opt.to, e.what()),
                e.exit_code());
  }
  if (opt.json) {
    std::printf("{\"event\":\"done\",\"rounds\":%d,\"bytes_sent\":%llu,\"downtime_s\":%.3f,\"final_dump_s\":%.3f,"
                "\"send_s\":%.3f,\"restore_s\":%.3f,\"total_s\":%.3f}\n",
                round, static_cast<unsigned long long>(wire), downtime, dump_s, send_s, downtime - dump_s - send_s,
                since(t_start));
    return 0;
  }
  std::printf("migrated %s to %s: %d pre-copy round(s), %.1f MiB sent, downtime %.3f s (freeze and dump %.3f, send "
              "%.3f, restore there %.3f), total %.3f s\n",
              opt.name.c_str(), opt.to.c_str(), round, wire / 1048576.0, downtime, dump_s, send_s,
              downtime - dump_s - send_s, since(t_start));
  return 0;
}

}  // namespace stasis::transport
