// Page file throughput: 1 GiB of realistic memory (zero, random and text-like pages) written
// and read back with each compression, next to a plain memcpy and a plain write()/read() of
// the same bytes to the same folder, in the same run.
//
//   pagefile_bench [FOLDER]   (default /tmp; its files are removed at the end)
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/file_util.h"
#include "images/page_file.h"

namespace {

namespace fs = std::filesystem;
using stasis::images::Compression;

constexpr size_t kPage = 4096;
constexpr size_t kTotal = 1ull << 30;
constexpr size_t kBatch = 4 << 20;  // bytes per PageWriter::add, like a dump's batches
constexpr uint64_t kBase = 0x7f0000000000;

// Pages in a repeating pattern of 16: 4 zero, 4 random, 8 text-like (a heap or a data
// segment holds both); runs of 2 so ranges are not all one page long.
std::vector<std::byte> make_data() {
  std::vector<std::byte> data(kTotal);
  const char* words[] = {"checkpoint ", "restore ", "struct ", "memory ", "0x7f00 ", "return ", "NULL ", "{\n  "};
  uint64_t x = 88172645463325252ull;
  for (size_t page = 0; page < kTotal / kPage; ++page) {
    std::byte* p = data.data() + page * kPage;
    size_t kind = (page / 2) % 8;
    if (kind < 2) {
      std::memset(p, 0, kPage);
    } else if (kind < 4) {
      for (size_t i = 0; i < kPage; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::memcpy(p + i, &x, 8);
      }
    } else {
      size_t at = 0;
      while (at < kPage) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const char* w = words[x % 8];
        size_t n = std::min(std::strlen(w), kPage - at);
        std::memcpy(p + at, w, n);
        at += n;
      }
    }
  }
  return data;
}

// Wall time and CPU time (user + system) of one phase. The machine is shared, so CPU time is
// the steadier measure of what a phase costs; wall time is what a user waits.
struct Timer {
  std::chrono::steady_clock::time_point wall = std::chrono::steady_clock::now();
  double cpu = cpu_now();
  static double cpu_now() {
    struct rusage ru {};
    ::getrusage(RUSAGE_SELF, &ru);
    auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return sec(ru.ru_utime) + sec(ru.ru_stime);
  }
  struct Lap {
    double wall, cpu;
  };
  Lap lap() const {
    return {std::chrono::duration<double>(std::chrono::steady_clock::now() - wall).count(), cpu_now() - cpu};
  }
};

void row(const char* what, Timer::Lap write, std::optional<Timer::Lap> read, double ratio) {
  double gb = static_cast<double>(kTotal) / 1e9;
  std::string r = read ? fmt::format("{:8.2f} {:8.2f}", gb / read->wall, gb / read->cpu) : fmt::format("{:>17}", "-");
  std::printf("%-22s %8.2f %8.2f   %s %8.2f\n", what, gb / write.wall, gb / write.cpu, r.c_str(), ratio);
}

}  // namespace

int main(int argc, char** argv) {
  fs::path folder = argc > 1 ? argv[1] : "/tmp";
  fs::path dir = folder / ("stasis-pagefile-bench-" + std::to_string(::getpid()));
  double copy_wall = 0, copy_cpu = 0;
  Timer::Lap none_write{0, 0};
  try {
    fs::create_directories(dir);
    std::printf("building 1 GiB of test data...\n");
    std::vector<std::byte> data = make_data();
    std::printf("folder %s; GB/s (1e9 bytes of input per second of wall time, and per CPU second)\n", dir.c_str());
    std::printf("%-22s %8s %8s   %8s %8s %8s\n", "", "write", "w/cpu", "read", "r/cpu", "ratio");

    {
      std::vector<std::byte> copy(kTotal);
      std::memset(copy.data(), 1, copy.size());  // fault it in first: time the copy only
      Timer t;
      std::memcpy(copy.data(), data.data(), kTotal);
      row("memcpy", t.lap(), std::nullopt, 1.0);
    }

    {
      fs::path p = dir / "plain.bin";
      Timer tw;
      {
        stasis::UniqueFd fd = stasis::open_or_throw(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        for (size_t at = 0; at < kTotal; at += kBatch) {
          stasis::write_all(fd.get(), std::span(data.data() + at, kBatch), p.string());
        }
      }
      auto ws = tw.lap();
      std::vector<std::byte> buf(kBatch);
      Timer tr;
      {
        stasis::UniqueFd fd = stasis::open_or_throw(p, O_RDONLY);
        for (size_t at = 0; at < kTotal; at += kBatch) stasis::read_exact(fd.get(), buf, p.string());
      }
      auto rs = tr.lap();
      row("plain write()/read()", ws, rs, 1.0);
      copy_wall = ws.wall + rs.wall;
      copy_cpu = ws.cpu + rs.cpu;
      fs::remove(p);
    }

    for (Compression c : {Compression::None, Compression::Lz4, Compression::Zstd}) {
      Timer tw;
      stasis::images::PageWriter writer(dir, 1, c);
      for (size_t at = 0; at < kTotal; at += kBatch) writer.add(kBase + at, std::span(data.data() + at, kBatch));
      writer.finish();
      auto ws = tw.lap();
      uint64_t stored = writer.stats().stored_bytes;

      Timer tr;
      uint64_t seen = 0;
      {
        stasis::images::PageReader reader(dir, 1);
        reader.for_each([&](uint64_t, uint64_t length, std::span<const std::byte>, bool) { seen += length; });
      }
      auto rs = tr.lap();
      if (seen != kTotal) std::fprintf(stderr, "read back %llu bytes, not %zu\n", (unsigned long long)seen, kTotal);
      std::string name = "pagefile " + std::string(stasis::images::compression_name(c));
      row(name.c_str(), ws, rs, static_cast<double>(kTotal) / static_cast<double>(stored));
      if (c == Compression::None) none_write = ws;
      fs::remove(dir / "pages-1.img");
      fs::remove(dir / "pagemap-1.img");
    }
    // The goal: saving memory uncompressed costs well under copying a file of the same size.
    std::printf("plain file copy (read + write): %.3f s wall, %.3f s CPU; page file none write: %.3f s wall, "
                "%.3f s CPU (%.0f%% / %.0f%% of the copy)\n",
                copy_wall, copy_cpu, none_write.wall, none_write.cpu, 100 * none_write.wall / copy_wall,
                100 * none_write.cpu / copy_cpu);
    fs::remove_all(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pagefile_bench: %s\n", e.what());
    std::error_code ec;
    fs::remove_all(dir, ec);
    return 1;
  }
  return 0;
}
