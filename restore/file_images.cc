#include "restore/file_images.h"

#include "common/file_util.h"
#include "common/unix_diag.h"
#include "images/image_file.h"
#include "restore/terminals.h"

namespace stasis::restore {

FileImages load_file_images(const images::Checkpoint& checkpoint) {
  using images::ImageType;
  FileImages out;
  auto load = [&]<typename Message>(ImageType type, auto&& add) {
    if (!checkpoint.exists(type)) return;
    for (auto& m : images::read_all<Message>(checkpoint.path(type), type)) add(std::move(m));
  };
  load.operator()<pb::RegFile>(ImageType::RegFiles, [&](pb::RegFile m) { out.regfiles[m.id()] = std::move(m); });
  load.operator()<pb::PipeEnd>(ImageType::Pipes, [&](pb::PipeEnd m) { out.pipe_ends[m.id()] = std::move(m); });
  load.operator()<pb::PipeData>(ImageType::PipeData,
                                [&](pb::PipeData m) { out.pipe_data[m.pipe_id()] = std::move(*m.mutable_data()); });
  load.operator()<pb::CharDev>(ImageType::CharDevs, [&](pb::CharDev m) { out.chardevs[m.id()] = std::move(m); });
  load.operator()<pb::EventFile>(ImageType::EventFiles,
                                 [&](pb::EventFile m) { out.event_files[m.id()] = std::move(m); });
  load.operator()<pb::UnixSocket>(ImageType::UnixSockets,
                                  [&](pb::UnixSocket m) { out.unix_sockets[m.ino()] = std::move(m); });
  for (const auto& [ino, s] : out.unix_sockets)
    if (!s.name().empty() && s.name()[0] != '\0' && s.accepted_from() == 0) {
      out.live_unix_files = live_unix_socket_files();
      break;
    }
  load.operator()<pb::InetSocket>(ImageType::InetSockets,
                                  [&](pb::InetSocket m) { out.inet_sockets[m.id()] = std::move(m); });
  load.operator()<pb::NetlinkSocket>(ImageType::NetlinkSockets,
                                     [&](pb::NetlinkSocket m) { out.netlink_sockets[m.id()] = std::move(m); });
  load_ttys(checkpoint, out.console, out.ptys);
  out.boot_id = read_file("/proc/sys/kernel/random/boot_id");
  while (!out.boot_id.empty() && out.boot_id.back() == '\n') out.boot_id.pop_back();
  return out;
}

}  // namespace stasis::restore
