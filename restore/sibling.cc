#include "restore/sibling.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/error.h"
#include "common/log.h"
#include "images/image_file.h"
#include "launcher/network.h"
#include "namespaces.pb.h"

namespace stasis::restore {

namespace {

constexpr int kExitWaitMs = 10000;

void write_text(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

std::string read_text(int fd) {
  std::string out;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// In PID 1, before init: what the launcher's PID 1 does for a container of its own.
void set_up_pid_1(int ns_flags) {
  ::signal(SIGPIPE, SIG_DFL);
  if (ns_flags & CLONE_NEWNS) {
    // Nothing mounted here may propagate to the host.
    check_sys(::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr), "make / rslave");
    check_sys(::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr), "mount a private /proc");
  }
  if (ns_flags & CLONE_NEWNET) launcher::net::set_loopback_up();
}

}  // namespace

int sibling_namespace_flags(const images::Checkpoint& checkpoint) {
  using images::ImageType;
  int flags = CLONE_NEWPID;
  if (!checkpoint.exists(ImageType::Namespaces))
    fail("{}: the checkpoint has no namespaces.img, which says which namespaces the job had",
         checkpoint.dir().string());
  pb::NamespaceState ns;
  images::read_single(checkpoint.path(ImageType::Namespaces), ImageType::Namespaces, ns);
  for (const auto& e : ns.namespaces()) {
    if (!e.own()) continue;
    if (e.kind() == "mnt") flags |= CLONE_NEWNS;
    else if (e.kind() == "net") flags |= CLONE_NEWNET;
    else if (e.kind() == "uts") flags |= CLONE_NEWUTS;
    else if (e.kind() == "ipc") flags |= CLONE_NEWIPC;
    else if (e.kind() == "cgroup") flags |= CLONE_NEWCGROUP;  // rooted at the cgroup runc put us in
    else if (e.kind() != "pid")
      throw UnsupportedError(fmt::format("the job had a {} namespace of its own, which a restore under runc does not "
                                         "make",
                                         e.kind()));
  }
  return flags;
}

SiblingInit::SiblingInit(int ns_flags, const std::function<int()>& init) {
  int go[2], ready[2];
  check_sys(::pipe2(go, O_CLOEXEC), "pipe");
  UniqueFd go_read(go[0]);
  go_.reset(go[1]);
  check_sys(::pipe2(ready, O_CLOEXEC), "pipe");
  UniqueFd ready_read(ready[0]), ready_write(ready[1]);
  int pidfd = -1;
  clone_args args{};
  args.flags = static_cast<uint64_t>(CLONE_PARENT | CLONE_PIDFD | ns_flags);
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = 0;  // clone3 wants none with CLONE_PARENT: the child gets ours (SIGCHLD, runc forked us)
  const long child = ::syscall(SYS_clone3, &args, sizeof args);
  if (child < 0) fail_errno(errno, "create the job's PID 1 as a sibling of stasis (clone3 CLONE_PARENT, flags {:#x})", ns_flags);
  if (child == 0) {
    ::prctl(PR_SET_NAME, "stasis-pid1");
    go_.reset();
    ready_read.reset();
    try {
      set_up_pid_1(ns_flags);
    } catch (const std::exception& e) {
      write_text(ready_write.get(), std::string("E") + e.what());
      ::_exit(1);
    }
    write_text(ready_write.get(), "R");
    ready_write.reset();
    char c = 0;
    while (::read(go_read.get(), &c, 1) < 0 && errno == EINTR) {
    }
    if (c != 'G') ::_exit(1);  // the restorer gave up or died
    go_read.reset();
    int rc = 1;
    try {
      rc = init();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "stasis: restored PID 1 failed: %s\n", e.what());
    }
    ::_exit(rc);
  }
  pid_ = static_cast<pid_t>(child);
  pidfd_.reset(pidfd);
  ready_write.reset();
  go_read.reset();
  const std::string said = read_text(ready_read.get());
  if (said != "R") {
    const std::string why = said.empty() ? "it died" : said.substr(1);
    fail("the job's PID 1 (host pid {}) could not set up its namespaces: {}", pid_, why);  // the destructor kills it
  }
  log::debug("PID 1 of the restored job: host pid {}, a child of pid {}, namespaces {:#x}", pid_, ::getppid(), ns_flags);
}

void SiblingInit::go() {
  write_text(go_.get(), "G");
  go_.reset();
}

SiblingInit::~SiblingInit() {
  if (dismissed_ || pid_ <= 0) return;
  // Not our child (runc reaps it): its exit is seen through the pidfd.
  if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0) < 0 && errno != ESRCH)
    log::warn("kill the restored job's PID 1 (host pid {}): {}", pid_, describe_errno(errno));
  pollfd p{pidfd_.get(), POLLIN, 0};
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(kExitWaitMs);
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      log::warn("the restored job's PID 1 (host pid {}) has not exited {} s after SIGKILL", pid_, kExitWaitMs / 1000);
      return;
    }
    const int n = ::poll(&p, 1, static_cast<int>(left));
    if (n > 0) return;
    if (n < 0 && errno != EINTR) return;
  }
}

}  // namespace stasis::restore
