#include "restore/namespaces.h"

#include <unistd.h>

#include "common/error.h"
#include "common/ns_thread.h"
#include "images/image_file.h"
#include "namespaces.pb.h"
#include "restore/ipc.h"

namespace stasis::restore {

namespace {

void restore_uts(pid_t pid, const pb::NamespaceState& ns) {
  run_in_namespaces(pid, {"uts"}, [&] {
    if (!ns.hostname().empty())
      check_sys(::sethostname(ns.hostname().data(), ns.hostname().size()), "sethostname \"{}\"", ns.hostname());
    if (!ns.domainname().empty())
      check_sys(::setdomainname(ns.domainname().data(), ns.domainname().size()), "setdomainname \"{}\"",
                ns.domainname());
  });
}

}  // namespace

HeldSegments restore_namespace_contents(const images::Checkpoint& checkpoint, pid_t pid) {
  using images::ImageType;
  if (checkpoint.exists(ImageType::Namespaces)) {
    pb::NamespaceState ns;
    images::read_single(checkpoint.path(ImageType::Namespaces), ImageType::Namespaces, ns);
    with_context(fmt::format("restore the UTS names of pid {}", pid), [&] { restore_uts(pid, ns); });
  }
  return restore_ipc(pid, load_ipc(checkpoint));
}

}  // namespace stasis::restore
