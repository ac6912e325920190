// `stasis dump`: checkpoint a container started by `stasis run`, or any process (--pid), into
// a checkpoint directory (docs/dump.md). Phases: freeze (seize every thread), collect (state
// that needs no page copying, asked from the stopped task), memory (pages), write (images and
// inventory); then the job is killed (and the container removed) or, with leave_running,
// detached and resumed. On any failure the job is detached and runs on untouched, the partial
// directory is removed, and the Error names pid/fd/kind/syscall.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "images/page_file.h"

namespace stasis::dump {

struct DumpOptions {
  std::string container;  // by name (state under state_root), or
  pid_t pid = 0;          // any process, with ptrace alone
  std::filesystem::path dir;
  std::filesystem::path state_root = "/run/stasis";
  bool leave_running = false;
  bool tcp_established = false;  // checkpoint established TCP connections (a network lock holds them)
  // The job's terminal was made outside it (--shell-job: the shell's it started from, its
  // controlling terminal or at its standard fds): saved as its console, whose fds restore
  // gives a new terminal. Without it, such a terminal is refused.
  bool shell_job = false;
  // The same for a controlling terminal only: the console of a runc `terminal: true`
  // container (runc asks for CRIU's orphan_pts_master on every checkpoint).
  bool outside_console = false;
  // With leave_running: the network lock stays after the dump (DumpReport::network_lock), so
  // that the frozen job's connections send and take nothing while another host takes them
  // over (`stasis migrate`); the caller removes it, or it goes with the job's namespace.
  bool keep_network_lock = false;
  images::Compression compression = images::Compression::Lz4;
  uint64_t ghost_limit = 64ull << 20;  // most data saved per deleted file or memfd (--ghost-limit)
  uint64_t tmpfs_limit = 64ull << 20;  // most file data saved per tmpfs the job mounted (--tmpfs-limit)
  // Incremental dumps (dump/incremental.h): memory only, the job running on and tracked
  // (--pre-dump); the checkpoint whose dump the pages count from (--parent).
  bool pre_dump = false;
  std::filesystem::path parent;
};

struct DumpReport {
  pid_t host_pid = 0;
  pid_t ns_pid = 0;
  size_t processes = 0;
  size_t threads = 0;
  size_t vmas = 0;
  size_t vmas_dumped = 0;
  size_t fds = 0;
  size_t sigactions = 0;
  images::PageStats pages;
  double freeze_s = 0, collect_s = 0, memory_s = 0, write_s = 0, frozen_s = 0, total_s = 0;
  double scan_s = 0, read_s = 0, encode_s = 0, page_write_s = 0, wait_s = 0;
  bool pagemap_scan = false;  // how the pages were found (else /proc/PID/pagemap)
  bool killed = false;
  std::vector<pid_t> tracked_pids;  // pre_dump: the processes whose writes are tracked from here
  std::string network_lock;  // keep_network_lock: the nftables table (inet) left in the job's namespace
  std::string memory_note;  // --leave-running: how the pages were copied (dump/background_copy.h)
};

DumpReport dump(const DumpOptions& options);

// Human-readable summary (what the CLI prints).
std::string format_report(const DumpOptions& options, const DumpReport& report);

}  // namespace stasis::dump
