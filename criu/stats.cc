#include "criu/stats.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "common/error.h"
#include "common/fd.h"
#include "criu_stats.pb.h"

namespace stasis::criu {

namespace {

// CRIU's service-file header: two magic numbers, then one entry as its size and its bytes
// (all little-endian u32). Readers (go-criu) skip these 12 bytes.
constexpr uint32_t kServiceMagic = 0x55105940;
constexpr uint32_t kStatsMagic = 0x57093306;

uint32_t micros(double seconds) { return seconds <= 0 ? 0 : static_cast<uint32_t>(seconds * 1e6); }

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

void write_dump_stats(int dir_fd, const dump::DumpReport& r) {
  stats_entry entry;
  dump_stats_entry* d = entry.mutable_dump();
  d->set_freezing_time(micros(r.freeze_s));
  d->set_frozen_time(micros(r.frozen_s));
  // CRIU splits the pages' time into draining them (memdump) and writing them (memwrite).
  d->set_memdump_time(micros(r.memory_s));
  d->set_memwrite_time(micros(r.page_write_s));
  d->set_pages_scanned(r.pages.pages);
  d->set_pages_skipped_parent(0);
  d->set_pages_written(r.pages.pages - r.pages.zero_pages);  // zero pages are kept as ranges only
  d->set_pages_lazy(0);
  std::string body = entry.SerializeAsString();
  std::string out;
  put_u32(out, kServiceMagic);
  put_u32(out, kStatsMagic);
  put_u32(out, static_cast<uint32_t>(body.size()));
  out += body;
  UniqueFd fd(::openat(dir_fd, kStatsDumpName, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) fail_errno(errno, "create {}", kStatsDumpName);
  if (::write(fd.get(), out.data(), out.size()) != static_cast<ssize_t>(out.size()))
    fail_errno(errno, "write {}", kStatsDumpName);
}

}  // namespace stasis::criu
