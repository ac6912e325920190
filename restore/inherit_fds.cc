#include "restore/inherit_fds.h"

#include <fcntl.h>
#include <unistd.h>

#include <map>

#include "common/error.h"
#include "common/log.h"

namespace stasis::restore {

namespace {

constexpr std::string_view kPipePrefix = ":pipe:[";

struct OutsidePipe {
  bool job_reads = false;  // the job holds the read end (else the write end)
  size_t queued = 0;       // bytes saved in pipe-data.img
};

std::map<uint64_t, OutsidePipe> outside_pipes(const FileImages& files) {
  std::map<uint64_t, OutsidePipe> out;
  for (const auto& [id, end] : files.pipe_ends) {
    if (!end.other_end_outside()) continue;
    OutsidePipe& p = out[end.pipe_id()];
    p.job_reads = (end.flags() & O_ACCMODE) == O_RDONLY;
    auto data = files.pipe_data.find(end.pipe_id());
    p.queued = data == files.pipe_data.end() ? 0 : data->second.size();
  }
  return out;
}

std::string list(const std::map<uint64_t, OutsidePipe>& pipes) {
  if (pipes.empty()) return "the checkpoint has none";
  std::string out;
  for (const auto& [ino, p] : pipes)
    out += fmt::format("{}pipe:[{}] (the job's {} end)", out.empty() ? "" : ", ", ino, p.job_reads ? "read" : "write");
  return "the checkpoint's are " + out;
}

UniqueFd open_source(const std::string& source, bool job_reads, const std::string& spec) {
  if (source.size() > 4 && source.rfind("fd[", 0) == 0 && source.back() == ']') {
    const std::string number = source.substr(3, source.size() - 4);
    char* end = nullptr;
    const long n = std::strtol(number.c_str(), &end, 10);
    if (number.empty() || *end != '\0' || n < 0 || n > 1 << 20) throw UsageError(fmt::format("--inherit-fd {}: {} is not fd[N]", spec, source));
    const int flags = ::fcntl(static_cast<int>(n), F_GETFL);
    if (flags < 0) throw UsageError(fmt::format("--inherit-fd {}: stasis restore has no fd {}", spec, n));
    const int mode = flags & O_ACCMODE;
    if (mode != O_RDWR && mode != (job_reads ? O_RDONLY : O_WRONLY))
      throw UsageError(fmt::format("--inherit-fd {}: fd {} is not open for {}, as the job's {} end needs", spec, n,
                                   job_reads ? "reading" : "writing", job_reads ? "read" : "write"));
    return UniqueFd(check_sys(::fcntl(static_cast<int>(n), F_DUPFD_CLOEXEC, 0), "--inherit-fd {}: dup fd {}", spec, n));
  }
  // O_NONBLOCK: a FIFO without its other end must not hang the restore (the job's end gets
  // the dumped O_NONBLOCK later).
  const int fd = job_reads ? ::open(source.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)
                           : ::open(source.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0644);
  if (fd < 0)
    throw UsageError(fmt::format("--inherit-fd {}: open {} for {}: {}", spec, source, job_reads ? "reading" : "appending",
                                 describe_errno(errno)));
  return UniqueFd(fd);
}

}  // namespace

std::vector<InheritedEnd> open_inherited_ends(const std::vector<std::string>& specs, const FileImages& files,
                                              int min_fd) {
  const auto pipes = outside_pipes(files);
  std::vector<InheritedEnd> out;
  for (const std::string& spec : specs) {
    const auto at = spec.rfind(kPipePrefix);
    char* end = nullptr;
    const uint64_t ino = at == std::string::npos ? 0 : std::strtoull(spec.c_str() + at + kPipePrefix.size(), &end, 10);
    if (at == std::string::npos || at == 0 || end == spec.c_str() + at + kPipePrefix.size() || std::string(end) != "]")
      throw UsageError(fmt::format("--inherit-fd {}: expected SOURCE:pipe:[INODE], SOURCE being fd[N] (an fd of stasis "
                                   "restore) or a file path; for pipes to outside, {}",
                                   spec, list(pipes)));
    auto pipe = pipes.find(ino);
    if (pipe == pipes.end())
      throw UsageError(fmt::format("--inherit-fd {}: pipe:[{}] is not a pipe of the job whose other end was outside it; "
                                   "{}",
                                   spec, ino, list(pipes)));
    for (const auto& other : out)
      if (other.pipe_id == ino) throw UsageError(fmt::format("--inherit-fd {}: pipe:[{}] is given twice", spec, ino));
    InheritedEnd e;
    e.pipe_id = ino;
    e.source = spec.substr(0, at);
    UniqueFd opened = open_source(e.source, pipe->second.job_reads, spec);
    e.fd = UniqueFd(check_sys(::fcntl(opened.get(), F_DUPFD_CLOEXEC, min_fd), "--inherit-fd {}: move above fd {}",
                              spec, min_fd));
    if (pipe->second.job_reads && pipe->second.queued > 0)
      log::warn("--inherit-fd {}: the {} bytes waiting in pipe:[{}] at dump time are not delivered: the job reads {} "
                "instead",
                spec, pipe->second.queued, ino, e.source);
    out.push_back(std::move(e));
  }
  for (const auto& [ino, p] : pipes) {
    bool given = false;
    for (const auto& e : out) given |= e.pipe_id == ino;
    if (given) continue;
    if (p.job_reads)
      log::info("pipe:[{}]: its write end was outside the job and is closed now: the job reads the {} bytes that were "
                "waiting, then end of file (connect it with --inherit-fd SOURCE:pipe:[{}])",
                ino, p.queued, ino);
    else
      log::info("pipe:[{}]: its read end was outside the job and is closed now: the job's writes fail with EPIPE "
                "(connect it with --inherit-fd SOURCE:pipe:[{}])",
                ino, ino);
  }
  return out;
}

}  // namespace stasis::restore
