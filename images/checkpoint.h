// A checkpoint directory: the inventory plus the image files it lists with their checksums.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "images/image_type.h"
#include "images/page_file.h"
#include "inventory.pb.h"

namespace stasis::images {

class Checkpoint {
 public:
  // Creates dir (it must not exist, or be empty) for a new checkpoint.
  static Checkpoint create(const std::filesystem::path& dir);
  // Opens an existing checkpoint: reads and checks inventory.img (missing or corrupt: Error
  // naming the directory). Does not verify the other files' checksums (see verify()).
  static Checkpoint open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path path(ImageType type, std::optional<int64_t> id = std::nullopt) const;
  bool exists(ImageType type, std::optional<int64_t> id = std::nullopt) const;

  // Fills the host fields of inventory (format and tool version, kernel, machine, XSAVE
  // mask, time), lists every other file of the directory with size and XXH3 checksum,
  // and writes inventory.img. The last step of a dump.
  void finalize(pb::Inventory inventory);
  const pb::Inventory& inventory() const { return inventory_; }

  // What verify does with the data of the page files: read and check every chunk (Check), or
  // check only their headers, whose checksums the inventory seals (Later: for a reader that
  // checks each chunk as it reads it, such as a restore's, which reads them through
  // open_pages).
  enum class PageData { Check, Later };
  // Checks every listed file's size and checksum, and that no listed file is missing.
  // Throws an Error naming the first bad file.
  void verify(PageData page_data = PageData::Check) const;
  // Checks one file against the inventory.
  void verify_file(const std::string& name, PageData page_data = PageData::Check) const;
  // The page file of `id`, its chunk headers checked against the inventory's checksum now and
  // each chunk's data as it is read (PageReader::open_sealed).
  std::unique_ptr<PageReader> open_pages(int64_t id) const;

 private:
  const pb::ImageChecksum& listed(const std::string& name) const;  // or throws
  explicit Checkpoint(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::filesystem::path dir_;
  pb::Inventory inventory_;
};

}  // namespace stasis::images
