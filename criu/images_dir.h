// The images directory of a DUMP, as runc and podman hand it over: it holds runc's
// descriptors.json (the container's stdio, read back on restore), and podman reuses the same
// directory for every checkpoint of a container, as CRIU overwrites. Our dump wants it empty:
// runc's file is kept aside in memory and a previous stasis checkpoint moved aside (to a
// sibling directory) while the dump runs; after it, runc's file comes back, and the previous
// checkpoint is dropped (success) or put back (failure). Anything else there is refused
// before a file is touched.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "common/fd.h"
#include "criu/options.h"

namespace stasis::criu {

class DumpDirectory {
 public:
  // ours: names of our own files that may be there from an earlier request (log, stats),
  // removed when the work directory is the images directory.
  DumpDirectory(const Directories& dirs, const std::vector<std::string>& ours);
  DumpDirectory(const DumpDirectory&) = delete;
  DumpDirectory& operator=(const DumpDirectory&) = delete;
  ~DumpDirectory();  // failed() unless succeeded() or failed() was called

  // Returns an fd of the images directory (invalid when it could not be opened).
  UniqueFd succeeded();
  // The dump removed its partial directory: made again with runc's file and the previous
  // checkpoint in it.
  UniqueFd failed();

 private:
  UniqueFd put_back();
  const Directories& dirs_;
  struct Stashed {
    std::string name;
    std::string data;
  };
  std::vector<Stashed> stashed_;
  std::filesystem::path previous_;         // where a previous checkpoint waits, or empty
  std::vector<std::string> previous_files_;
  bool done_ = false;
};

}  // namespace stasis::criu
