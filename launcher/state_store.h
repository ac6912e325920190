// Container state: one file per container (ROOT/<name>.state, pb::ContainerState in protobuf's
// binary form: JSON would cost every `stasis run` half a millisecond of descriptor building;
// `stasis ps --json` shows it), written atomically. Every read-modify-write holds an exclusive flock
// on ROOT/.lock, because the monitor and the commands (ps, rm, freeze, dump...) all write.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/fd.h"
#include "container.pb.h"

namespace stasis::launcher {

class StateStore {
 public:
  // Creates ROOT (mode 0700) when missing.
  explicit StateStore(std::filesystem::path root);

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path state_path(const std::string& name) const;   // ROOT/<name>.state
  std::filesystem::path default_log_path(const std::string& name) const;  // ROOT/<name>.log

  // Throws Error "no container named X under ROOT" when missing.
  pb::ContainerState load(const std::string& name) const;
  std::optional<pb::ContainerState> try_load(const std::string& name) const;
  void save(const pb::ContainerState& state) const;  // atomic (write_file_atomic, without fsync)
  void remove(const std::string& name) const;        // no error if already gone
  std::vector<pb::ContainerState> list() const;      // sorted by name; unreadable files skipped

  // Holds the store's lock (flock on ROOT/.lock) for its lifetime.
  class Lock {
   public:
    explicit Lock(const StateStore& store);
   private:
    UniqueFd fd_;
  };

  // load + fn + save under the lock; returns false (and does nothing) when the container is gone.
  bool update(const std::string& name, const std::function<void(pb::ContainerState&)>& fn) const;

 private:
  std::filesystem::path root_;
};

// pb::ContainerState as JSON text, for `ps --json`.
std::string state_to_json(const pb::ContainerState& state);

}  // namespace stasis::launcher
