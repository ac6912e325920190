// Helpers shared by the tests: run commands, temporary directories, waiting with a bound.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
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

// Polls cond every 10 ms until it is true or timeout passes; returns its last value.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

}  // namespace stasis::test
