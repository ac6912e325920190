// Namespaces a job shares with its host (external), rejoined at restore (docs/design.md): a
// `dump --pid` of a host process comes back in the restoring host's mount, UTS, IPC and network
// namespaces, seeing that host's mounts and names, but with a PID namespace of its own under our
// init (its PID is the dumped one there, and collides with nothing). `stasis show` says, for each
// kind, whether it was the job's own or external and rejoined. A `--net host` container has its
// own mount, UTS and IPC namespaces back, and the host's network one.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <climits>
#include <fstream>

#include "common/file_util.h"
#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

// The job under a container's PID 1 (our init after a restore), or PID 1.
pid_t job_of(pid_t init) {
  std::ifstream in("/proc/" + std::to_string(init) + "/task/" + std::to_string(init) + "/children");
  pid_t child = -1;
  return (in >> child) ? child : init;
}

// The entry of namespace `kind` in `stasis show`'s JSON, up to its closing brace ("" if none).
std::string namespace_entry(const std::string& show, const std::string& kind) {
  const size_t at = show.find("\"kind\": \"" + kind + "\"");
  return at == std::string::npos ? "" : show.substr(at, show.find('}', at) - at);
}

bool says(const std::string& entry, const std::string& field, bool value) {
  return entry.find("\"" + field + "\": " + (value ? "true" : "false")) != std::string::npos;
}

std::string host_name() {
  char name[HOST_NAME_MAX + 1] = "";
  ::gethostname(name, sizeof name);
  return name;
}

// A tmpfs mounted on a fresh folder of the host, unmounted (lazily) at the end.
class HostMount {
 public:
  HostMount() { mounted_ = ::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, "size=64k") == 0; }
  ~HostMount() {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  HostMount(const HostMount&) = delete;
  HostMount& operator=(const HostMount&) = delete;
  bool mounted() const { return mounted_; }
  const fs::path& path() const { return dir_.path(); }

 private:
  TempDir dir_{"stasis-extns-mnt"};
  bool mounted_ = false;
};

TEST(CheckpointExternalNamespaces, HostProcessComesBackInTheHostsMountUtsIpcAndNetButItsOwnPidNamespace) {
  CheckpointEnv env;
  HostProcess host;
  ASSERT_TRUE(host.start(c_workload("counter"), env.status_path("host")));
  const pid_t dumped_pid = host.pid();
  const fs::path dir = env.image_dir("host");
  ASSERT_TRUE(env.dump_pid(host.pid(), dir)) << host.log_tail();
  ASSERT_TRUE(host.wait_exit(20s));

  CommandResult show = env.stasis({"show", dir.string()});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  for (const char* kind : {"mnt", "uts", "ipc", "net"}) {
    const std::string entry = namespace_entry(show.out, kind);
    EXPECT_TRUE(says(entry, "own", false) && says(entry, "external", true) && says(entry, "rejoin", true))
        << kind << ": " << entry;
  }
  const std::string pid_entry = namespace_entry(show.out, "pid");
  EXPECT_TRUE(says(pid_entry, "external", true) && says(pid_entry, "rejoin", false)) << pid_entry;

  const std::string hostname = host_name();
  Container restored(env, "from-host");
  ASSERT_TRUE(restored.restore(dir, host.status())) << restored.last_output();
  std::optional<pid_t> init = restored.host_pid();
  ASSERT_TRUE(init);
  const pid_t job = job_of(*init);
  for (const char* kind : {"mnt", "uts", "ipc", "net"})
    EXPECT_EQ(namespace_id(job, kind), namespace_id(::getpid(), kind)) << kind << " is not the host's";
  EXPECT_NE(namespace_id(job, "pid"), namespace_id(::getpid(), "pid"));
  EXPECT_EQ(namespace_pid(job), dumped_pid) << "the job keeps its PID in a PID namespace of its own";
  EXPECT_EQ(host_name(), hostname) << "the restore changed the host's name";

  // A mount the host makes now is the job's too.
  HostMount later;
  ASSERT_TRUE(later.mounted());
  const std::string mountinfo = read_file("/proc/" + std::to_string(job) + "/mountinfo");
  std::string needle = later.path().string();
  needle.insert(needle.begin(), ' ');
  needle.push_back(' ');
  EXPECT_NE(mountinfo.find(needle), std::string::npos)
      << later.path() << " is not in the restored job's mounts";
  clear_status(host.status());
  EXPECT_TRUE(keep_progressing(host.status(), 1s));

  // Dumped again as the container it is now, it comes back the same way.
  const fs::path dir2 = env.image_dir("host-2");
  ASSERT_TRUE(restored.dump(dir2)) << restored.last_output();
  ASSERT_TRUE(restored.wait_gone());
  Container again(env, "from-host-2");
  ASSERT_TRUE(again.restore(dir2, host.status())) << again.last_output();
  std::optional<pid_t> init2 = again.host_pid();
  ASSERT_TRUE(init2);
  const pid_t job2 = job_of(*init2);
  for (const char* kind : {"mnt", "uts", "ipc", "net"})
    EXPECT_EQ(namespace_id(job2, kind), namespace_id(::getpid(), kind)) << kind << " is not the host's";
  EXPECT_EQ(namespace_pid(job2), dumped_pid);
  clear_status(host.status());
  EXPECT_TRUE(keep_progressing(host.status(), 1s));
}

TEST(CheckpointExternalNamespaces, NetHostContainerGetsItsOwnMountUtsAndIpcBack) {
  CheckpointEnv env;
  Container original(env, "nethost");
  ASSERT_TRUE(original.run(c_workload("counter"), {"--net", "host"}));
  const fs::path dir = env.image_dir("nethost");
  ASSERT_TRUE(original.dump(dir));
  ASSERT_TRUE(original.wait_gone());
  CommandResult show = env.stasis({"show", dir.string()});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  for (const char* kind : {"mnt", "uts", "ipc", "pid"}) {
    const std::string entry = namespace_entry(show.out, kind);
    EXPECT_TRUE(says(entry, "own", true) && says(entry, "rejoin", false)) << kind << ": " << entry;
  }
  EXPECT_TRUE(says(namespace_entry(show.out, "net"), "rejoin", true));

  Container restored(env, "nethost-back");
  ASSERT_TRUE(restored.restore(dir, original.status())) << restored.last_output();
  std::optional<pid_t> init = restored.host_pid();
  ASSERT_TRUE(init);
  const pid_t job = job_of(*init);
  for (const char* kind : {"mnt", "uts", "ipc", "pid"})
    EXPECT_NE(namespace_id(job, kind), namespace_id(::getpid(), kind)) << kind << " is the host's";
  EXPECT_EQ(namespace_id(job, "net"), namespace_id(::getpid(), "net"));
  EXPECT_TRUE(keep_progressing(restored.status(), 1s));
}

}  // namespace
}  // namespace stasis::test
