// Helpers shared by the tests: run commands, temporary directories, waiting with a bound.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stasis::test {

struct CommandResult {
  int exit_code = -1;   // exit status, or 128+signal
  std::string out;
  std::string err;
};

// Runs argv (no shell) with a time bound; kills it (by its pid) when the bound passes.
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(60));
// Runs build/stasis with these arguments.
CommandResult run_stasis(const std::vector<std::string>& args,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

// What fn throws as a stasis::Error (its what()), or "" when it throws none.
std::string error_of(const std::function<void()>& fn);

std::string stasis_binary();
// The whole content of a file; "" when it cannot be read.
std::string read_text(const std::filesystem::path& path);
std::string workload(const std::string& name);  // path of a built workload

// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "stasis-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A forked child running body(), killed (SIGKILL, by its pid) and reaped in every path; it
// dies with the test if the test crashes.
class ForkedChild {
 public:
  template <typename Fn>
  explicit ForkedChild(Fn&& body) {
    pid_ = start();
    if (pid_ == 0) {
      body();
      finish_child();
    }
  }
  ~ForkedChild();
  ForkedChild(const ForkedChild&) = delete;
  ForkedChild& operator=(const ForkedChild&) = delete;
  pid_t pid() const { return pid_; }

 private:
  static pid_t start();                   // fork; in the child, PR_SET_PDEATHSIG
  [[noreturn]] static void finish_child();  // _exit(0)
  pid_t pid_ = -1;
};

// Why the running kernel lacks the feature that `stasis check` probes under this name (its
// detail), or nullopt when it has it. Results are kept for the life of the test process.
std::optional<std::string> missing_feature(std::string_view name);

// A TCP socket's state as TCP_INFO gives it (1: established), or -1.
int tcp_state(int sock);
// Its pending error (SO_ERROR), 0 when none: ECONNRESET after a reset.
int socket_error(int sock);

// Polls cond every 10 ms until it is true or timeout passes; returns its last value.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

// An OCI bundle for runc in `bundle` (config.json and an empty rootfs): a python3 counter
// writing /state/counter every 50 ms in namespaces of its own (see test_util.cc); `program`,
// when given, is the python3 code run instead, escaped for a JSON string ("\\n" between lines);
// `terminal`: on a terminal runc makes (`terminal: true`, the master to --console-socket).
void write_runc_counter_bundle(const std::filesystem::path& bundle, const std::string& hostname,
                               const std::string& program = "", bool terminal = false);

}  // namespace stasis::test

// Skips the current test, naming the feature, when the running kernel lacks it, as
// `stasis check` would say: tests of what the kernel has run, the others are skipped.
#define STASIS_REQUIRE_FEATURE(name)                                                          \
  do {                                                                                        \
    if (auto stasis_missing_ = ::stasis::test::missing_feature(name))                         \
      GTEST_SKIP() << "this kernel lacks the feature " << (name) << ": " << *stasis_missing_; \
  } while (0)
