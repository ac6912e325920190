#include "restore/remote.h"

#include <algorithm>
#include <span>

#include "common/error.h"

namespace stasis::restore {

Remote::Remote(ptrace::SeizedThread& thread, pid_t host_pid, uint64_t code_page)
    : thread_(thread), host_pid_(host_pid), code_page_(code_page) {
  syscall_.emplace(thread, code_page + kSyscallEntry, /*patch=*/false);
}

std::vector<long> Remote::call_batch(std::span<const BatchCall> calls) {
  constexpr size_t kWords = 8;  // nr, six arguments, result
  constexpr size_t kPerRound = kScratchSize / (kWords * 8) - 1;  // and the end marker
  std::vector<long> results(calls.size(), kNotRun);
  std::vector<uint64_t> table;
  for (size_t first = 0; first < calls.size(); first += kPerRound) {
    const size_t n = std::min(kPerRound, calls.size() - first);
    table.assign((n + 1) * kWords, 0);
    for (size_t i = 0; i < n; ++i) {
      const BatchCall& c = calls[first + i];
      table[i * kWords] = static_cast<uint64_t>(c.nr);
      std::copy(std::begin(c.args), std::end(c.args), table.begin() + static_cast<long>(i * kWords + 1));
      table[i * kWords + 7] = static_cast<uint64_t>(kNotRun);
    }
    table[n * kWords] = static_cast<uint64_t>(-1);
    const uint64_t at = put_scratch(table.data(), table.size() * 8);
    syscall_->run_batch(code_page_ + kBatchEntry, code_page_ + kBatchEnd, at);
    ptrace::read_memory(host_pid_, at, std::as_writable_bytes(std::span(table)));
    for (size_t i = 0; i < n; ++i) {
      const long rc = static_cast<long>(table[i * kWords + 7]);
      results[first + i] = rc;
      if (rc < 0 && rc > -4096) return results;
    }
  }
  return results;
}

std::vector<long> Remote::call_batch_checked(std::span<const BatchCall> calls) {
  std::vector<long> results = call_batch(calls);
  for (size_t i = 0; i < calls.size(); ++i)
    if (results[i] < 0 && results[i] > -4096)
      fail("pid {}: remote {}: {}", thread_.tid(), calls[i].name, describe_errno(static_cast<int>(-results[i])));
  return results;
}

uint64_t Remote::put_scratch(const void* data, size_t size) {
  scratch_used_ = 0;
  return append_scratch(data, size);
}

uint64_t Remote::append_scratch(const void* data, size_t size) {
  const uint64_t offset = (scratch_used_ + 15) & ~uint64_t{15};
  if (offset + size > kScratchSize) fail("pid {}: {} bytes do not fit the scratch area", host_pid_, size);
  const uint64_t addr = code_page_ + kScratchOffset + offset;
  ptrace::write_memory(host_pid_, addr, std::as_bytes(std::span(static_cast<const char*>(data), size)));
  scratch_used_ = offset + size;
  return addr;
}

}  // namespace stasis::restore
