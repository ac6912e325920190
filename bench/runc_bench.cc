// runc_bench: wall time of `runc checkpoint` and `runc restore` of the same container, a
// python3 job holding MIB MiB of random bytes, through stasis (`runc --criu stasis`) and,
// when a CRIU of version 4 or later is on PATH, through CRIU; each ROUNDS times, the
// container restored and checkpointed again. Images go to DIR. Needs runc (scripts/setup
// installs Debian's); the CRIU side is skipped, saying why, without a usable CRIU.
//
//   runc_bench [--mib 1024] [--rounds 3] [--dir /dev/shm] [--stasis PATH]
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"

namespace {

namespace fs = std::filesystem;

// An OCI bundle: python3 fills MIB MiB with random bytes, then counts in /state/counter.
void write_bundle(const fs::path& bundle, int mib) {
  const fs::path rootfs = bundle / "rootfs";
  for (const char* d : {"usr", "proc", "dev", "sys", "tmp", "state", "etc"}) fs::create_directories(rootfs / d);
  for (const char* l : {"bin", "lib", "lib64", "sbin"}) fs::create_symlink(std::string("usr/") + l, rootfs / l);
  const std::string program =
      "import os,time,itertools\\nm=bytearray(os.urandom(" + std::to_string(mib) +
      "<<20))\\n[(open('/state/counter','w').write(str(i)),time.sleep(0.05)) for i in itertools.count(1)]";
  std::ofstream(bundle / "config.json") << R"({
 "ociVersion": "1.0.2-dev",
 "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
  "args": ["python3", "-c", ")" + program + R"("], "env": ["PATH=/usr/bin:/bin"], "noNewPrivileges": true},
 "root": {"path": "rootfs", "readonly": false},
 "hostname": "bench",
 "mounts": [
  {"destination": "/proc", "type": "proc", "source": "proc"},
  {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
  {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
  {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}],
 "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]}
})";
}

bool counting(const fs::path& bundle, int timeout_s) {
  const auto deadline = bench::Clock::now() + std::chrono::seconds(timeout_s);
  while (bench::Clock::now() < deadline) {
    if (std::atol(bench::read_text(bundle / "rootfs/state/counter").c_str()) > 0) return true;
    usleep(20000);
  }
  return false;
}

// `sh -c CMD` with the job's stdio away from our pipe (runc's detached job keeps it).
bench::Result shell(const std::string& cmd, int timeout_s) {
  return bench::run({"sh", "-c", cmd + " </dev/null >/dev/null 2>&1"}, timeout_s);
}

// Checkpoints and restores the container `rounds` times through `criu`; prints each time.
void measure(const std::string& label, const std::string& criu, const fs::path& bundle, const fs::path& dir, int mib,
             int rounds) {
  const std::string id = "stasis-bench-" + std::to_string(getpid());
  fs::remove(bundle / "rootfs/state/counter");
  if (shell("exec runc run -d -b " + bundle.string() + " " + id, 60).exit_code != 0 || !counting(bundle, 120)) {
    std::printf("%-8s the container did not start (runc run)\n", label.c_str());
    shell("runc delete -f " + id, 30);
    return;
  }
  std::vector<double> dumps, restores;
  for (int round = 0; round < rounds; ++round) {
    const fs::path images = dir / ("stasis-runc-bench-" + std::to_string(getpid()));
    fs::remove_all(images);
    fs::create_directories(images);
    auto t0 = bench::Clock::now();
    bench::Result r = shell("exec runc --criu " + criu + " checkpoint --image-path " + images.string() + " " + id, 600);
    const double dump_s = bench::seconds_since(t0);
    if (r.exit_code != 0) {
      std::printf("%-8s checkpoint failed: %s\n", label.c_str(), bench::read_text(images / "dump.log").c_str());
      break;
    }
    t0 = bench::Clock::now();
    r = shell("exec runc --criu " + criu + " restore -d -b " + bundle.string() + " --image-path " + images.string() +
                  " " + id,
              600);
    const double restore_s = bench::seconds_since(t0);
    if (r.exit_code != 0) {
      std::printf("%-8s restore failed: %s\n", label.c_str(), bench::read_text(images / "restore.log").c_str());
      fs::remove_all(images);
      break;
    }
    uint64_t bytes = 0;
    for (const auto& e : fs::directory_iterator(images))
      if (e.is_regular_file()) bytes += e.file_size();
    fs::remove_all(images);
    dumps.push_back(dump_s);
    restores.push_back(restore_s);
    std::printf("%-8s %5d MiB  round %d: runc checkpoint %6.2f s, runc restore %6.2f s, images %7.1f MiB\n",
                label.c_str(), mib, round + 1, dump_s, restore_s, static_cast<double>(bytes) / (1 << 20));
    std::fflush(stdout);
  }
  shell("runc delete -f " + id, 30);
  if (!dumps.empty()) {
    std::sort(dumps.begin(), dumps.end());
    std::sort(restores.begin(), restores.end());
    std::printf("%-8s median: runc checkpoint %.2f s, runc restore %.2f s\n", label.c_str(), dumps[dumps.size() / 2],
                restores[restores.size() / 2]);
  }
}

// A CRIU of version 4 or later on PATH (its `--version` says "Version: X.Y"), or "".
std::string usable_criu(std::string* why) {
  bench::Result r = bench::run({"criu", "--version"}, 10);
  if (r.exit_code != 0) {
    *why = "no criu on PATH";
    return "";
  }
  const size_t at = r.out.find("Version: ");
  const int major = at == std::string::npos ? 0 : std::atoi(r.out.c_str() + at + 9);
  // A criu on PATH may be stasis itself (the link podman uses): it says so.
  if (r.out.find("stasis") != std::string::npos) {
    *why = "the criu on PATH is stasis";
    return "";
  }
  if (major < 4) {
    *why = "the criu on PATH is older than 4.0 (Debian 12's 3.17 fails every dump on current kernels)";
    return "";
  }
  return "criu";
}

}  // namespace

int main(int argc, char** argv) {
  int mib = 1024, rounds = 3;
  fs::path dir = "/dev/shm";
  std::string stasis = (fs::canonical("/proc/self/exe").parent_path().parent_path() / "stasis").string();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--mib") mib = std::atoi(argv[i + 1]);
    else if (flag == "--rounds") rounds = std::atoi(argv[i + 1]);
    else if (flag == "--dir") dir = argv[i + 1];
    else if (flag == "--stasis") stasis = argv[i + 1];
    else {
      std::fprintf(stderr, "runc_bench: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (bench::run({"runc", "--version"}, 10).exit_code != 0) {
    std::fprintf(stderr, "runc_bench: runc is not installed (scripts/setup installs Debian's runc)\n");
    return 1;
  }
  const fs::path bundle = dir / ("stasis-runc-bench-bundle-" + std::to_string(getpid()));
  fs::remove_all(bundle);
  write_bundle(bundle, mib);
  std::printf("runc checkpoint/restore of a python3 container holding %d MiB of random bytes, images in %s\n", mib,
              dir.c_str());
  measure("stasis", stasis, bundle, dir, mib, rounds);
  std::string why;
  const std::string criu = usable_criu(&why);
  if (criu.empty()) std::printf("criu     skipped: %s\n", why.c_str());
  else measure("criu", criu, bundle, dir, mib, rounds);
  fs::remove_all(bundle);
  return 0;
}
