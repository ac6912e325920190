// Dump and restore times and image sizes for a job holding N MiB of touched memory (the
// bigmem workload) with each page compression, beside a plain copy of the same amount of
// memory to the same folder, measured in the same run.
//
//   checkpoint_bench [--sizes 64,256,1024,4096] [--compress none,lz4,zstd] [--dir /tmp]
//                    [--stasis PATH] [--bigmem PATH] [--repeat 2]
//
// For each size it first times the baseline: write() of an equal buffer of random data to a
// file in the image folder ("copy"), and reading it back into fresh memory ("readback", the
// plain counterpart of a restore, which also faults in fresh pages), best of two. Then for each
// compression, --repeat times: run bigmem in a container, wait for its first "ok", `stasis
// dump` (timed, with the frozen time dump prints), measure the image, `stasis restore -d`
// (timed) and the time until the restored job reports progress again. The best of the
// repeats is printed, with dump and restore as ratios to the copy (the goals: at most 1.1x and
// 0.7x), and the peak RSS of the `stasis dump` and `stasis restore` processes (ru_maxrss from
// wait4: the command itself and the children it waited for, not the job, which it does not).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

using namespace bench;  // run, wait_progress, read_text... (bench_util.h)

uint64_t dir_bytes(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) total += e.file_size(ec);
  return total;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

struct Baseline {
  double copy_s = 0;
  double readback_s = 0;
};

// write() of `mib` MiB of random data to a file in dir, then read it back into fresh memory.
Baseline measure_copy(const fs::path& dir, uint64_t mib) {
  Baseline b;
  size_t bytes = static_cast<size_t>(mib) << 20;
  auto* buf = static_cast<uint64_t*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (buf == MAP_FAILED) return b;
  uint64_t x = 0x243F6A8885A308D3ULL;
  for (size_t i = 0; i < bytes / 8; ++i) {  // same kind of data as bigmem: incompressible
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    buf[i] = x * 0x2545F4914F6CDD1DULL;
  }
  fs::path file = dir / "copy.bin";
  auto t0 = Clock::now();
  int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  for (size_t off = 0; fd >= 0 && off < bytes;) {
    ssize_t n = write(fd, reinterpret_cast<char*>(buf) + off, std::min<size_t>(bytes - off, 8 << 20));
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  if (fd >= 0) close(fd);
  b.copy_s = seconds_since(t0);
  munmap(buf, bytes);

  auto* back = static_cast<char*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (back != MAP_FAILED) {
    t0 = Clock::now();
    fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
    for (size_t off = 0; fd >= 0 && off < bytes;) {
      ssize_t n = read(fd, back + off, std::min<size_t>(bytes - off, 8 << 20));
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    if (fd >= 0) close(fd);
    b.readback_s = seconds_since(t0);
    munmap(back, bytes);
  }
  fs::remove(file);
  return b;
}

struct Options {
  std::vector<uint64_t> sizes{64, 256, 1024, 4096};
  std::vector<std::string> compressions{"none", "lz4", "zstd"};
  fs::path dir = "/tmp";
  std::string stasis;
  std::string bigmem;
  int repeat = 2;
};

void usage() {
  fprintf(stderr,
          "usage: checkpoint_bench [--sizes MIB,...] [--compress none,lz4,zstd] [--dir DIR] [--stasis PATH] "
          "[--bigmem PATH] [--repeat N]\n");
}

}  // namespace

struct Cycle {
  double dump_s = 0, frozen_s = 0, image_mib = 0, restore_s = 0, to_ok_s = 0;
  double dump_rss_mib = 0, restore_rss_mib = 0;  // the highest of the repeats
  Cycle min(const Cycle& o) const {
    return {std::min(dump_s, o.dump_s),
            std::min(frozen_s, o.frozen_s),
            image_mib,
            std::min(restore_s, o.restore_s),
            std::min(to_ok_s, o.to_ok_s),
            std::max(dump_rss_mib, o.dump_rss_mib),
            std::max(restore_rss_mib, o.restore_rss_mib)};
  }
};

// One run, dump, restore, and progress check of bigmem holding `mib` MiB; nothing on failure
// (said on stderr). Removes its containers, images and status file.
std::optional<Cycle> run_cycle(const Options& o, const fs::path& root, const fs::path& work, uint64_t mib,
                               const std::string& comp, const std::string& name) {
  static const std::regex frozen_re("frozen ([0-9.]+)s");
  fs::path status = work / (name + ".status");
  fs::path images = work / ("images-" + name);
  fs::create_directories(images);
  auto stasis = [&](std::vector<std::string> args, int timeout_s) {
    std::vector<std::string> all{o.stasis, "--root", root.string()};
    all.insert(all.end(), args.begin(), args.end());
    return run(all, timeout_s);
  };
  auto cleanup = [&](const std::string& n) { stasis({"rm", "-f", n}, 60); };
  auto fail = [&](const char* what, const Result& r) {
    fprintf(stderr, "bench: %llu MiB %s: %s failed: %s\n", static_cast<unsigned long long>(mib), comp.c_str(), what,
            r.out.c_str());
    cleanup(name);
    cleanup(name + "-r");
    fs::remove_all(images);
    fs::remove(status);
    return std::nullopt;
  };
  Cycle c;
  Result r = stasis({"run", "-d", "--name", name, "--", o.bigmem, status.string(), std::to_string(mib)}, 120);
  uint64_t n = 0;
  if (r.exit_code != 0 || !wait_progress(status, 0, 600, &n)) return fail("start", r);
  auto t0 = Clock::now();
  r = stasis({"dump", name, "-D", images.string(), "--compress", comp}, 1800);
  c.dump_s = seconds_since(t0);
  c.dump_rss_mib = r.max_rss_mib;
  if (r.exit_code != 0) return fail("dump", r);
  std::smatch m;
  c.frozen_s = std::regex_search(r.out, m, frozen_re) ? std::stod(m[1]) : -1;
  c.image_mib = static_cast<double>(dir_bytes(images)) / (1 << 20);
  cleanup(name);  // a no-op when dump already removed it
  if (auto last = read_progress(status)) n = std::max(n, *last);
  fs::remove(status);

  t0 = Clock::now();
  r = stasis({"restore", "-D", images.string(), "--name", name + "-r", "-d"}, 1800);
  c.restore_s = seconds_since(t0);
  c.restore_rss_mib = r.max_rss_mib;
  if (r.exit_code != 0) return fail("restore", r);
  if (!wait_progress(status, n, 120)) return fail("progress after restore", r);
  c.to_ok_s = seconds_since(t0);
  cleanup(name + "-r");
  fs::remove_all(images);
  fs::remove(status);
  fs::remove(fs::path(status.string() + ".tmp"));
  return c;
}

int main(int argc, char** argv) {
  Options o;
  fs::path build = fs::read_symlink("/proc/self/exe").parent_path().parent_path();
  o.stasis = (build / "stasis").string();
  o.bigmem = (build / "tests/workloads/bigmem").string();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        exit(2);
      }
      return argv[++i];
    };
    if (a == "--sizes") {
      o.sizes.clear();
      for (const auto& s : split(value())) {
        char* end = nullptr;
        unsigned long long n = strtoull(s.c_str(), &end, 10);
        if (!end || *end || n == 0) {
          fprintf(stderr, "checkpoint_bench: bad size '%s' (MiB expected)\n", s.c_str());
          return 2;
        }
        o.sizes.push_back(n);
      }
    } else if (a == "--compress") {
      o.compressions = split(value());
    } else if (a == "--dir") {
      o.dir = value();
    } else if (a == "--stasis") {
      o.stasis = value();
    } else if (a == "--bigmem") {
      o.bigmem = value();
    } else if (a == "--repeat") {
      o.repeat = std::max(1, atoi(value().c_str()));
    } else {
      usage();
      return 2;
    }
  }
  for (const auto& p : {o.stasis, o.bigmem})
    if (access(p.c_str(), X_OK) != 0) {
      fprintf(stderr, "checkpoint_bench: %s is not an executable: %s\n", p.c_str(), strerror(errno));
      return 2;
    }
  std::string tmpl = (o.dir / "stasis-bench-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) {
    fprintf(stderr, "checkpoint_bench: mkdtemp %s: %s\n", tmpl.c_str(), strerror(errno));
    return 1;
  }
  const fs::path work = tmpl;
  const fs::path root = work / "root";
  fs::create_directories(root);

  printf("%8s %5s | %8s %8s %9s %8s | %9s %8s %9s %10s %10s | %8s %8s\n", "MiB", "comp", "copy s", "dump s",
         "frozen s", "image MiB", "dump/copy", "readback", "restore s", "to-ok s", "rest/copy", "dump RSS", "rest RSS");
  int failures = 0;
  int serial = 0;
  for (uint64_t mib : o.sizes) {
    // Best of two: the first write of a large file can be slowed by writeback of earlier runs.
    Baseline base = measure_copy(work, mib), again = measure_copy(work, mib);
    base.copy_s = std::min(base.copy_s, again.copy_s);
    base.readback_s = std::min(base.readback_s, again.readback_s);
    for (const auto& comp : o.compressions) {
      // Best of --repeat cycles: fresh memory in these VMs is sometimes several times slower
      // to touch the first time, which would otherwise decide single figures.
      Cycle best;
      bool ok = true;
      for (int k = 0; k < o.repeat && ok; ++k) {
        std::optional<Cycle> c = run_cycle(o, root, work, mib, comp, "bench-" + std::to_string(getpid()) + "-" +
                                                                         std::to_string(serial++));
        if (!c) {
          ok = false;
          ++failures;
          break;
        }
        best = k == 0 ? *c : best.min(*c);
      }
      if (!ok) continue;
      printf("%8llu %5s | %8.3f %8.3f %9.3f %9.1f | %9.2f %8.3f %9.3f %10.3f %10.2f | %7.1fM %7.1fM\n",
             static_cast<unsigned long long>(mib), comp.c_str(), base.copy_s, best.dump_s, best.frozen_s,
             best.image_mib, base.copy_s > 0 ? best.dump_s / base.copy_s : 0.0, base.readback_s, best.restore_s,
             best.to_ok_s, base.copy_s > 0 ? best.restore_s / base.copy_s : 0.0, best.dump_rss_mib,
             best.restore_rss_mib);
      fflush(stdout);
    }
  }
  std::error_code ec;
  fs::remove_all(work, ec);
  return failures ? 1 : 0;
}
