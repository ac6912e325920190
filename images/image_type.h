// The kinds of image file in a checkpoint directory, and their file names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stasis::images {

// The image format version this build writes; readers reject newer ones.
inline constexpr uint32_t kFormatVersion = 1;

// Each kind has its own code in the file header, so a file cannot be read as another kind.
enum class ImageType : uint16_t {
  Inventory = 1,   // inventory.img (pb::Inventory)
  Pstree = 2,      // pstree.img (pb::TaskEntry records)
  Core = 3,        // core-<pid>.img (pb::TaskCore)
  Signals = 4,     // signals-<pid>.img (pb::SignalState)
  Mm = 5,          // mm-<pid>.img (pb::MmState)
  Pagemap = 6,     // pagemap-<id>.img (pb::PagemapHeader, then pb::PagemapEntry records)
  Pages = 7,       // pages-<id>.img (raw chunks, see page_file.h)
  Fds = 8,         // fds-<pid>.img (pb::FdEntry records)
  RegFiles = 9,    // regfiles.img (pb::RegFile records)
  Pipes = 10,      // pipes.img (pb::PipeEnd records)
  PipeData = 11,   // pipe-data.img (pb::PipeData records)
  CharDevs = 12,   // chardevs.img (pb::CharDev records)
  Namespaces = 13, // namespaces.img (pb::NamespaceState)
  Cgroup = 14,     // cgroup.img (pb::CgroupState)
  Container = 15,  // container.img (pb::ContainerConfig)
  EventFiles = 16, // eventfiles.img (pb::EventFile records)
  Ipc = 17,        // ipc.img (pb::IpcObject records)
  Mounts = 18,     // mounts.img (pb::MountEntry records)
  Tmpfs = 19,      // tmpfs.img (pb::TmpfsFile records)
  Net = 20,        // net.img (pb::NetState)
  UnixSockets = 22,  // unix-sockets.img (pb::UnixSocket records)
  InetSockets = 24,     // inet-sockets.img (pb::InetSocket records)
  NetlinkSockets = 25,  // netlink-sockets.img (pb::NetlinkSocket records)
  Ttys = 26,       // ttys.img (pb::TtyState records)
};

std::string_view type_name(ImageType type);  // "core", "pagemap", ...
std::optional<ImageType> type_from_name(std::string_view name);

// File name of an image: "inventory.img" for per-checkpoint kinds, "core-42.img" with an id.
std::string image_file_name(ImageType type, std::optional<int64_t> id = std::nullopt);

// The kind whose code is in a file header, if there is one.
std::optional<ImageType> type_from_code(uint32_t code);

// The reverse of image_file_name: "core-42.img" -> {Core, 42}, "pstree.img" -> {Pstree, none}.
// Nothing for names that are not image files of a known kind.
struct ParsedImageName {
  ImageType type;
  std::optional<int64_t> id;
};
std::optional<ParsedImageName> parse_image_file_name(std::string_view file_name);

}  // namespace stasis::images
