// Reading a whole checkpoint for people: the JSON document of `stasis show`, the full
// check of `show --verify`, and the xxd-style dump of `show --pages`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace stasis::images {

// The inventory, then every image it lists decoded by its kind (page files summarised),
// as one pretty-printed JSON document. Throws an Error naming the first unknown or bad file.
std::string checkpoint_json(const std::filesystem::path& dir);

// Checks everything: the inventory, each listed file's size and XXH3, each record's
// checksum and parse, each page chunk's checksums and decompression. Throws on the first
// error; returns the number of files checked.
size_t verify_checkpoint(const std::filesystem::path& dir);

// 16 bytes a line like xxd: "00007f0000001000: 4865 6c6c 6f0a ...  Hello."
std::string hex_dump(uint64_t address, std::span<const std::byte> data);

// Turns compact JSON into indented JSON (2 spaces), leaving strings untouched.
std::string pretty_json(std::string_view compact);

}  // namespace stasis::images
