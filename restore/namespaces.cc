#include "restore/namespaces.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string_view>

#include "common/error.h"
#include "common/ns_thread.h"
#include "images/image_file.h"
#include "namespaces.pb.h"
#include "restore/ipc.h"
#include "restore/net.h"

namespace stasis::restore {

namespace {

bool rejoined(const pb::NamespaceState& ns, std::string_view kind) {
  for (const auto& e : ns.namespaces())
    if (e.kind() == kind) return e.rejoin();
  return false;
}

void restore_uts(pid_t pid, const pb::NamespaceState& ns) {
  if (rejoined(ns, "uts")) return;  // the restoring host's names are the job's now
  run_in_namespaces(pid, {"uts"}, [&] {
    if (!ns.hostname().empty())
      check_sys(::sethostname(ns.hostname().data(), ns.hostname().size()), "sethostname \"{}\"", ns.hostname());
    if (!ns.domainname().empty())
      check_sys(::setdomainname(ns.domainname().data(), ns.domainname().size()), "setdomainname \"{}\"",
                ns.domainname());
  });
}

// A namespace the job shared with its host must be ours (the restoring host's) again, not a
// new one: the launcher made the container so (--net host, host_namespaces); a mismatch would
// be a job cut off.
void check_rejoined(pid_t pid, const pb::NamespaceState& ns) {
  for (const auto& e : ns.namespaces()) {
    if (!e.rejoin()) continue;
    struct stat job {}, self {};
    std::string job_path = fmt::format("/proc/{}/ns/{}", pid, e.kind());
    std::string self_path = fmt::format("/proc/self/ns/{}", e.kind());
    check_sys(::stat(job_path.c_str(), &job), "stat {}", job_path);
    check_sys(::stat(self_path.c_str(), &self), "stat {}", self_path);
    if (job.st_ino != self.st_ino || job.st_dev != self.st_dev)
      fail("pid {}: the job shared the host's {} namespace when dumped, but the restored container has one of its "
           "own (its configuration says neither --net host nor that it shares that namespace)",
           pid, e.kind());
  }
}

}  // namespace

void share_host_namespaces(const images::Checkpoint& checkpoint, pb::ContainerConfig& config) {
  using images::ImageType;
  if (!checkpoint.exists(ImageType::Namespaces)) return;
  pb::NamespaceState ns;
  images::read_single(checkpoint.path(ImageType::Namespaces), ImageType::Namespaces, ns);
  config.clear_host_namespaces();
  for (const char* kind : {"mnt", "uts", "ipc"})
    if (rejoined(ns, kind)) config.add_host_namespaces(kind);
}

HeldSegments restore_namespace_contents(const images::Checkpoint& checkpoint, pid_t pid) {
  using images::ImageType;
  if (checkpoint.exists(ImageType::Namespaces)) {
    pb::NamespaceState ns;
    images::read_single(checkpoint.path(ImageType::Namespaces), ImageType::Namespaces, ns);
    check_rejoined(pid, ns);
    with_context(fmt::format("restore the UTS names of pid {}", pid), [&] { restore_uts(pid, ns); });
  }
  if (auto net = load_net(checkpoint)) restore_net(pid, *net);
  return restore_ipc(pid, load_ipc(checkpoint));
}

}  // namespace stasis::restore
