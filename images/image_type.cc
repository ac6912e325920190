#include "images/image_type.h"

#include <array>
#include <charconv>

#include <fmt/format.h>

namespace stasis::images {

namespace {

struct TypeInfo {
  ImageType type;
  std::string_view name;
};

// The stem of each kind's file name. "pipe-data" holds a dash, so ids are split off at the last one.
constexpr std::array<TypeInfo, 24> kTypes{{
    {ImageType::Inventory, "inventory"},
    {ImageType::Pstree, "pstree"},
    {ImageType::Core, "core"},
    {ImageType::Signals, "signals"},
    {ImageType::Mm, "mm"},
    {ImageType::Pagemap, "pagemap"},
    {ImageType::Pages, "pages"},
    {ImageType::Fds, "fds"},
    {ImageType::RegFiles, "regfiles"},
    {ImageType::Pipes, "pipes"},
    {ImageType::PipeData, "pipe-data"},
    {ImageType::CharDevs, "chardevs"},
    {ImageType::Namespaces, "namespaces"},
    {ImageType::Cgroup, "cgroup"},
    {ImageType::Container, "container"},
    {ImageType::EventFiles, "eventfiles"},
    {ImageType::Ipc, "ipc"},
    {ImageType::Mounts, "mounts"},
    {ImageType::Tmpfs, "tmpfs"},
    {ImageType::Net, "net"},
    {ImageType::UnixSockets, "unix-sockets"},
    {ImageType::InetSockets, "inet-sockets"},
    {ImageType::NetlinkSockets, "netlink-sockets"},
    {ImageType::Ttys, "ttys"},
}};

constexpr std::string_view kSuffix = ".img";

}  // namespace

std::string_view type_name(ImageType type) {
  for (const auto& t : kTypes) {
    if (t.type == type) return t.name;
  }
  return "unknown";
}

std::optional<ImageType> type_from_name(std::string_view name) {
  for (const auto& t : kTypes) {
    if (t.name == name) return t.type;
  }
  return std::nullopt;
}

std::optional<ImageType> type_from_code(uint32_t code) {
  for (const auto& t : kTypes) {
    if (static_cast<uint32_t>(t.type) == code) return t.type;
  }
  return std::nullopt;
}

std::string image_file_name(ImageType type, std::optional<int64_t> id) {
  if (id) return fmt::format("{}-{}{}", type_name(type), *id, kSuffix);
  return fmt::format("{}{}", type_name(type), kSuffix);
}

std::optional<ParsedImageName> parse_image_file_name(std::string_view file_name) {
  if (file_name.size() <= kSuffix.size() || !file_name.ends_with(kSuffix)) return std::nullopt;
  std::string_view stem = file_name.substr(0, file_name.size() - kSuffix.size());
  if (auto type = type_from_name(stem)) return ParsedImageName{*type, std::nullopt};
  size_t dash = stem.rfind('-');
  if (dash == std::string_view::npos || dash + 1 == stem.size()) return std::nullopt;
  std::string_view digits = stem.substr(dash + 1);
  int64_t id = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  auto type = type_from_name(stem.substr(0, dash));
  if (!type) return std::nullopt;
  return ParsedImageName{*type, id};
}

}  // namespace stasis::images
