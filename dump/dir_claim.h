// One dump per checkpoint directory at a time. The claim creates the directory if needed and
// holds an exclusive flock on it for the dump's life: a second dump into it is refused at
// once, before it touches anything, and the kernel drops the lock however the dumper ends
// (kill -9 included), so a claim never outlives its dump. While the dump runs the directory
// also holds a `.unfinished` subdirectory (finalize checksums regular files only): a dump
// killed before it finished leaves it behind, and the next claim, finding it with no
// inventory and no lock held, clears those leftovers instead of refusing a non-empty folder.
#pragma once

#include <filesystem>

#include "common/fd.h"

namespace stasis::dump {

class DirectoryClaim {
 public:
  // Creates and locks dir, clears the leftovers of a killed dump; throws when another dump
  // holds it.
  explicit DirectoryClaim(const std::filesystem::path& dir);
  DirectoryClaim(const DirectoryClaim&) = delete;
  DirectoryClaim& operator=(const DirectoryClaim&) = delete;

  // Puts the `.unfinished` mark (once the directory is checked empty).
  void mark_unfinished();
  // The dump completed: the mark goes (failure only logged; the lock stays until destruction).
  void complete();

  static constexpr const char* kUnfinished = ".unfinished";

 private:
  std::filesystem::path dir_;
  UniqueFd fd_;
};

}  // namespace stasis::dump
