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

// Polls cond every 10 ms until it is true or timeout passes; returns its last value.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

}  // namespace stasis::test
