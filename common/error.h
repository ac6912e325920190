// Errors: one exception type that carries its context as text, so a failure deep in
// dump or restore surfaces as "dump pid 42: read fd 3: ... (errno 2, ENOENT)".
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace stasis {

// Exit codes of the `stasis` command (documented in docs/cli.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,         // the operation failed; the message says what and where
  kExitUsage = 2,           // bad command line
  kExitNotImplemented = 3,  // the command or option is declared but not built yet
  kExitUnsupported = 4,     // the kernel or the job uses something we do not support
  kExitExecFailed = 127,    // `stasis run`: the job's command could not be executed
};

class Error : public std::runtime_error {
 public:
  explicit Error(std::string message, int exit_code = kExitFailure)
      : std::runtime_error(std::move(message)), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// A bad command line or option value: exit 2.
class UsageError : public Error {
 public:
  explicit UsageError(std::string message) : Error(std::move(message), kExitUsage) {}
};

// Something we knowingly do not handle (a socket fd in part 1, a missing kernel feature): exit 4.
class UnsupportedError : public Error {
 public:
  explicit UnsupportedError(std::string message) : Error(std::move(message), kExitUnsupported) {}
};

// A state of the job that passes by itself (inotify events it has not read yet) and that a
// checkpoint cannot carry: the dump lets the job go and tries again a moment later, and
// reports it as unsupported (exit 4) when it is still there after its last try.
class PassingStateError : public UnsupportedError {
 public:
  using UnsupportedError::UnsupportedError;
};

// "ENOENT" for 2, and so on; falls back to the number.
std::string errno_name(int err);
// "No such file or directory (errno 2, ENOENT)"
std::string describe_errno(int err);

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// Throws with ": <strerror> (errno N, NAME)" appended.
template <typename... Args>
[[noreturn]] void fail_errno(int err, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...) + ": " + describe_errno(err));
}

// For raw syscalls: returns rc when rc >= 0, otherwise throws with errno.
template <typename T, typename... Args>
T check_sys(T rc, fmt::format_string<Args...> format, Args&&... args) {
  if (rc < 0) fail_errno(errno, format, std::forward<Args>(args)...);
  return rc;
}

// Prefixes the message of any Error thrown by fn with context ("restore pid 7: ").
template <typename Fn>
auto with_context(std::string_view context, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const PassingStateError& e) {
    throw PassingStateError(fmt::format("{}: {}", context, e.what()));
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", context, e.what()), e.exit_code());
  }
}

}  // namespace stasis
