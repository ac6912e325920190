#include "images/image_messages.h"

#include "cgroup.pb.h"
#include "chardev.pb.h"
#include "eventfiles.pb.h"
#include "container.pb.h"
#include "core.pb.h"
#include "files.pb.h"
#include "inet_socket.pb.h"
#include "inventory.pb.h"
#include "ipc.pb.h"
#include "mm.pb.h"
#include "mounts.pb.h"
#include "namespaces.pb.h"
#include "net.pb.h"
#include "pagemap.pb.h"
#include "pipe.pb.h"
#include "pstree.pb.h"
#include "regfile.pb.h"
#include "signals.pb.h"
#include "unix_socket.pb.h"
#include "tty.pb.h"

namespace stasis::images {

std::unique_ptr<google::protobuf::MessageLite> new_record(ImageType type) {
  switch (type) {
    case ImageType::Inventory: return std::make_unique<pb::Inventory>();
    case ImageType::Pstree: return std::make_unique<pb::TaskEntry>();
    case ImageType::Core: return std::make_unique<pb::TaskCore>();
    case ImageType::Signals: return std::make_unique<pb::SignalState>();
    case ImageType::Mm: return std::make_unique<pb::MmState>();
    case ImageType::Pagemap: return std::make_unique<pb::PagemapEntry>();
    case ImageType::Pages: return nullptr;
    case ImageType::Fds: return std::make_unique<pb::FdEntry>();
    case ImageType::RegFiles: return std::make_unique<pb::RegFile>();
    case ImageType::Pipes: return std::make_unique<pb::PipeEnd>();
    case ImageType::PipeData: return std::make_unique<pb::PipeData>();
    case ImageType::CharDevs: return std::make_unique<pb::CharDev>();
    case ImageType::EventFiles: return std::make_unique<pb::EventFile>();
    case ImageType::Ipc: return std::make_unique<pb::IpcObject>();
    case ImageType::Mounts: return std::make_unique<pb::MountEntry>();
    case ImageType::Tmpfs: return std::make_unique<pb::TmpfsFile>();
    case ImageType::Net: return std::make_unique<pb::NetState>();
    case ImageType::UnixSockets: return std::make_unique<pb::UnixSocket>();
    case ImageType::InetSockets: return std::make_unique<pb::InetSocket>();
    case ImageType::NetlinkSockets: return std::make_unique<pb::NetlinkSocket>();
    case ImageType::Namespaces: return std::make_unique<pb::NamespaceState>();
    case ImageType::Cgroup: return std::make_unique<pb::CgroupState>();
    case ImageType::Container: return std::make_unique<pb::ContainerConfig>();
    case ImageType::Ttys: return std::make_unique<pb::TtyState>();
  }
  return nullptr;
}

}  // namespace stasis::images
