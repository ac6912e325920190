// `stasis swrk FD`, CRIU's RPC protocol (docs/criu.md): the test plays the client as runc
// does (a SOCK_SEQPACKET socket pair, our end at fd 3 of `stasis swrk 3`, one message per
// datagram), then runc itself when Debian's runc is installed.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/fd.h"
#include "criu_rpc.pb.h"
#include "criu_stats.pb.h"
#include "tests/support/checkpoint_harness.h"
#include "tests/support/test_util.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using criu::criu_req;
using criu::criu_resp;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// `stasis swrk 3` with our socket's other end at its fd 3; killed (by pid) and reaped in
// every path. Every wait is bounded: a server that hangs fails the test, not the suite.
class SwrkClient {
 public:
  // binary: build/stasis, or a link to it named criu.
  explicit SwrkClient(const std::string& binary = stasis_binary()) {
    int sv[2];
    if (::socketpair(AF_LOCAL, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) throw std::runtime_error("socketpair");
    sock_ = sv[0];
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      ::dup2(sv[1], 3);  // without FD_CLOEXEC, as runc's ExtraFiles
      int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::execl(binary.c_str(), binary.c_str(), "swrk", "3", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(sv[1]);
  }
  ~SwrkClient() {
    if (sock_ >= 0) ::close(sock_);
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  SwrkClient(const SwrkClient&) = delete;
  SwrkClient& operator=(const SwrkClient&) = delete;

  void send_bytes(const std::string& bytes) {
    ASSERT_EQ(::send(sock_, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  void send(const criu_req& req) { send_bytes(req.SerializeAsString()); }

  // The next response; nullopt when the server closed its end or did not answer in time.
  std::optional<criu_resp> receive(std::chrono::milliseconds timeout = 60s) {
    pollfd p{sock_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
    char buf[64 * 1024];
    ssize_t n = ::recv(sock_, buf, sizeof buf, 0);
    if (n <= 0) return std::nullopt;
    criu_resp resp;
    if (!resp.ParseFromArray(buf, static_cast<int>(n))) return std::nullopt;
    return resp;
  }

  // The exit status, or -1 when it did not exit within the bound (then it is killed).
  int wait_exit(std::chrono::milliseconds timeout = 30s) {
    int status = 0;
    bool done = wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
    if (!done) return -1;
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  void close_socket() {
    ::close(sock_);
    sock_ = -1;
  }

 private:
  int sock_ = -1;
  pid_t pid_ = -1;
  bool reaped_ = false;
};

criu_req request(criu::criu_req_type type) {
  criu_req r;
  r.set_type(type);
  return r;
}

// A directory opened by the test: its fd number goes in images_dir_fd, as runc's does.
class OpenDir {
 public:
  explicit OpenDir(const fs::path& p) : fd_(::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}
  ~OpenDir() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }

 private:
  int fd_;
};

TEST(CriuRpc, VersionAnswersTheCriuLevelWeSpeak) {
  SwrkClient client;
  client.send(request(criu::VERSION));
  auto resp = client.receive();
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->type(), criu::VERSION);
  EXPECT_TRUE(resp->success());
  ASSERT_TRUE(resp->has_version());
  EXPECT_EQ(resp->version().major_number(), 3);
  EXPECT_EQ(resp->version().minor_number(), 16);
  // go-criu counts a gitid as the next minor release: none is sent.
  EXPECT_FALSE(resp->version().has_gitid());
  EXPECT_EQ(resp->version().name().rfind("stasis ", 0), 0u) << resp->version().name();
  EXPECT_EQ(client.wait_exit(), 0);
}

TEST(CriuRpc, FeatureCheckSaysWhatIsThere) {
  SwrkClient client;
  criu_req req = request(criu::FEATURE_CHECK);
  req.mutable_features()->set_mem_track(true);
  req.mutable_features()->set_lazy_pages(true);
  req.mutable_opts()->set_images_dir_fd(-1);  // runc sends its options along
  client.send(req);
  auto resp = client.receive();
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->type(), criu::FEATURE_CHECK);
  EXPECT_TRUE(resp->success());
  ASSERT_TRUE(resp->has_features());
  ASSERT_TRUE(resp->features().has_mem_track());
  // As `stasis check` finds the dirty tracking of pre-dumps.
  EXPECT_EQ(resp->features().mem_track(), !missing_feature("dirty-tracking").has_value());
  ASSERT_TRUE(resp->features().has_lazy_pages());
  EXPECT_FALSE(resp->features().lazy_pages());
  EXPECT_EQ(client.wait_exit(), 0);
}

TEST(CriuRpc, CheckRunsTheKernelProbes) {
  SwrkClient client;
  client.send(request(criu::CHECK));
  auto resp = client.receive();
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->type(), criu::CHECK);
  // As `stasis check` says: success exactly when it exits 0.
  bool check_ok = run_stasis({"check"}).exit_code == 0;
  EXPECT_EQ(resp->success(), check_ok) << resp->cr_errmsg();
  if (!resp->success()) {
    EXPECT_NE(resp->cr_errmsg().find("lacks"), std::string::npos);
  }
}

TEST(CriuRpc, KeepOpenServesSeveralRequests) {
  SwrkClient client;
  criu_req req = request(criu::VERSION);
  req.set_keep_open(true);
  client.send(req);
  ASSERT_TRUE(client.receive());
  client.send(request(criu::FEATURE_CHECK));
  auto resp = client.receive();
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->type(), criu::FEATURE_CHECK);
  EXPECT_EQ(client.wait_exit(), 0);
}

TEST(CriuRpc, UnsupportedRequestTypeFailsNamingIt) {
  SwrkClient client;
  client.send(request(criu::PAGE_SERVER));
  auto resp = client.receive();
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->type(), criu::PAGE_SERVER);
  EXPECT_FALSE(resp->success());
  EXPECT_NE(resp->cr_errmsg().find("PAGE_SERVER"), std::string::npos) << resp->cr_errmsg();
  EXPECT_EQ(resp->cr_errno(), EOPNOTSUPP);
  EXPECT_EQ(client.wait_exit(), 1);
}

TEST(CriuRpc, RestoreNotAsSiblingIsRefusedWithTheReasonInItsLog) {
  TempDir dir("stasis-criu");
  OpenDir images(dir.path());
  criu_req req = request(criu::RESTORE);
  req.mutable_opts()->set_images_dir_fd(images.fd());
  req.mutable_opts()->set_log_file("restore.log");
  SwrkClient client;
  client.send(req);
  auto resp = client.receive();
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->type(), criu::RESTORE);
  EXPECT_FALSE(resp->success());
  EXPECT_EQ(resp->cr_errno(), EOPNOTSUPP);
  EXPECT_NE(resp->cr_errmsg().find("rst_sibling"), std::string::npos) << resp->cr_errmsg();
  EXPECT_EQ(client.wait_exit(), 1);
  // runc and podman show only the errno and the log's path.
  EXPECT_NE(slurp(dir.path() / "restore.log").find("rst_sibling"), std::string::npos);
}

TEST(CriuRpc, GarbageDatagramIsAnsweredAndEndsTheSession) {
  SwrkClient client;
  client.send_bytes(std::string("\xff\xff\xff\xff not protobuf", 17));
  auto resp = client.receive();
  ASSERT_TRUE(resp);
  EXPECT_FALSE(resp->success());
  EXPECT_EQ(resp->type(), criu::EMPTY);
  EXPECT_NE(resp->cr_errmsg().find("not a criu_req"), std::string::npos) << resp->cr_errmsg();
  EXPECT_EQ(client.wait_exit(), 1);
}

TEST(CriuRpc, TruncatedRequestIsAnsweredAndEndsTheSession) {
  criu_req req = request(criu::DUMP);
  req.mutable_opts()->set_images_dir_fd(5);
  req.mutable_opts()->set_pid(1234);
  req.mutable_opts()->set_log_file("dump.log");
  req.mutable_opts()->set_root("/some/rootfs/of/a/container");
  std::string bytes = req.SerializeAsString();
  SwrkClient client;
  client.send_bytes(bytes.substr(0, bytes.size() - 9));  // cut inside root's string
  auto resp = client.receive();
  ASSERT_TRUE(resp);
  EXPECT_FALSE(resp->success());
  EXPECT_NE(resp->cr_errmsg().find("not a criu_req"), std::string::npos) << resp->cr_errmsg();
  EXPECT_EQ(client.wait_exit(), 1);
}

TEST(CriuRpc, ClientClosingEndsTheServer) {
  SwrkClient client;
  client.close_socket();
  EXPECT_EQ(client.wait_exit(), 0);
}

TEST(CriuRpc, NotASocketIsRefused) {
  // fd 3 of a plain run is whatever the test has there, or nothing: no socket pair.
  auto r = run_stasis({"swrk", "200"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("fd 200"), std::string::npos) << r.err;
}

// podman, CRI-O and runc 1.2+ run `criu` from PATH: a link named criu answers as CRIU.
TEST(CriuRpc, RunAsCriu) {
  TempDir bin("stasis-criu-bin");
  const fs::path criu = bin.path() / "criu";
  fs::create_symlink(stasis_binary(), criu);
  auto version = run_command({criu.string(), "--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out.rfind("Version: 3.16\n", 0), 0u) << version.out;
  auto check = run_command({criu.string(), "check"});
  EXPECT_EQ(check.exit_code == 0, run_stasis({"check"}).exit_code == 0) << check.err;
  if (check.exit_code == 0) {
    EXPECT_EQ(check.out, "Looks good.\n");
  }
  EXPECT_NE(run_command({criu.string(), "check", "--feature", "mem_dirty_track"}).exit_code, 0);
  auto dump = run_command({criu.string(), "dump", "-t", "1"});
  EXPECT_EQ(dump.exit_code, 2);
  EXPECT_NE(dump.err.find("swrk"), std::string::npos) << dump.err;

  SwrkClient client(criu.string());
  client.send(request(criu::VERSION));
  auto resp = client.receive();
  ASSERT_TRUE(resp);
  EXPECT_TRUE(resp->success());
  EXPECT_EQ(resp->version().minor_number(), 16);
  EXPECT_EQ(client.wait_exit(), 0);
}

// A process to dump: one thread, no children.
class Counter {
 public:
  Counter()
      : child_([] {
          // Nothing of the test's (ctest's log, which changes as other tests end): a restore
          // would find such a file changed since the dump.
          ::syscall(SYS_close_range, 3u, ~0u, 0u);
          for (;;) ::pause();
        }) {}
  pid_t pid() const { return child_.pid(); }
  bool alive() const { return ::kill(child_.pid(), 0) == 0; }

 private:
  ForkedChild child_;
};

criu_req dump_request(int images_fd, pid_t pid) {
  criu_req req = request(criu::DUMP);
  criu::criu_opts* o = req.mutable_opts();
  // As runc 1.1.5 sets them for `runc checkpoint --leave-running`.
  o->set_images_dir_fd(images_fd);
  o->set_log_level(4);
  o->set_log_file("dump.log");
  o->set_root("/");
  o->set_manage_cgroups(true);
  o->set_notify_scripts(true);
  o->set_pid(pid);
  o->set_shell_job(false);
  o->set_leave_running(true);
  o->set_tcp_established(false);
  o->set_ext_unix_sk(false);
  o->set_file_locks(false);
  o->set_empty_ns(0);
  o->set_orphan_pts_master(true);
  o->set_auto_dedup(false);
  o->set_lazy_pages(false);
  o->set_config_file("/etc/criu/runc.conf.absent-for-stasis-tests");
  return req;
}

// Answers each notification until the final response, which it returns; the scripts seen go
// into *scripts. fail_at: the one answered with notify_success = false.
std::optional<criu_resp> answer_notifications(SwrkClient& client, std::vector<std::string>* scripts,
                                              const std::string& fail_at = "") {
  for (int i = 0; i < 16; ++i) {
    auto resp = client.receive();
    if (!resp || resp->type() != criu::NOTIFY) return resp;
    scripts->push_back(resp->notify().script());
    criu_req ack = request(criu::NOTIFY);
    ack.set_notify_success(resp->notify().script() != fail_at);
    client.send(ack);
  }
  return std::nullopt;
}

TEST(CriuRpc, RefusedOptionIsNamedInTheResponseAndTheLog) {
  Counter job;
  TempDir dir("stasis-criu");
  OpenDir images(dir.path());
  criu_req req = dump_request(images.fd(), job.pid());
  req.mutable_opts()->set_lazy_pages(true);
  SwrkClient client;
  client.send(req);
  auto resp = client.receive();
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->type(), criu::DUMP);
  EXPECT_FALSE(resp->success());
  EXPECT_NE(resp->cr_errmsg().find("lazy_pages"), std::string::npos) << resp->cr_errmsg();
  EXPECT_EQ(resp->cr_errno(), EOPNOTSUPP);
  EXPECT_EQ(client.wait_exit(), 1);
  EXPECT_NE(slurp(dir.path() / "dump.log").find("lazy_pages"), std::string::npos);
  EXPECT_TRUE(job.alive());
}

// Each option we do not honour, set as a client would: refused by name, nothing written.
TEST(CriuRpc, EveryUnhonouredOptionIsRefusedByName) {
  Counter job;
  TempDir etc("stasis-criu-etc");
  std::ofstream(etc.path() / "runc.conf") << "tcp-close\n";
  struct Case {
    std::string option;
    std::function<void(criu::criu_opts*)> set;
  };
  const std::vector<Case> cases = {
      {"external", [](criu::criu_opts* o) { o->add_external("net[4026531840]:extRootNetNS"); }},
      {"parent_img", [](criu::criu_opts* o) { o->set_parent_img("/absolute/parent"); }},
      {"ps", [](criu::criu_opts* o) { o->mutable_ps()->set_port(1234); }},
      {"empty_ns", [](criu::criu_opts* o) { o->set_empty_ns(CLONE_NEWNET | CLONE_NEWPID); }},
      {"status_fd", [](criu::criu_opts* o) { o->set_status_fd(7); }},
      {"leave_stopped", [](criu::criu_opts* o) { o->set_leave_stopped(true); }},
      {"config_file", [&](criu::criu_opts* o) { o->set_config_file((etc.path() / "runc.conf").string()); }},
      {"pid", [](criu::criu_opts* o) { o->clear_pid(); }},
      // A field of a newer protocol than ours (number 200, a varint).
      {"field(s) 200", [](criu::criu_opts* o) { o->mutable_unknown_fields()->append("\xc0\x0c\x01", 3); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.option);
    TempDir dir("stasis-criu");
    OpenDir images(dir.path());
    criu_req req = dump_request(images.fd(), job.pid());
    c.set(req.mutable_opts());
    SwrkClient client;
    client.send(req);
    auto resp = client.receive();
    ASSERT_TRUE(resp);
    EXPECT_FALSE(resp->success());
    EXPECT_NE(resp->cr_errmsg().find(c.option), std::string::npos) << resp->cr_errmsg();
    EXPECT_EQ(client.wait_exit(), 1);
    EXPECT_FALSE(fs::exists(dir.path() / "inventory.img"));
  }
  EXPECT_TRUE(job.alive());
}

// runc names the container's freezer cgroup: a process in it that is neither the dumped one
// nor its descendant would be left out of the checkpoint, and is refused.
TEST(CriuRpc, FreezeCgroupHoldingAnotherProcessIsRefused) {
  const fs::path base = fs::exists("/sys/fs/cgroup/freezer") ? "/sys/fs/cgroup/freezer" : "/sys/fs/cgroup";
  struct CgroupDir {
    fs::path path;
    ~CgroupDir() { ::rmdir(path.c_str()); }  // its processes, declared after it, are gone by then
  } cg{base / fmt::format("stasis-criu-test-{}", ::getpid())};
  ASSERT_TRUE(fs::create_directory(cg.path));
  Counter job, other;
  auto move = [](const fs::path& to, pid_t pid) { std::ofstream(to / "cgroup.procs") << pid << "\n"; };
  move(cg.path, job.pid());
  move(cg.path, other.pid());
  TempDir dir("stasis-criu");
  OpenDir images(dir.path());
  criu_req req = dump_request(images.fd(), job.pid());
  req.mutable_opts()->set_freeze_cgroup(cg.path.string());
  {
    SwrkClient client;
    client.send(req);
    auto resp = client.receive();
    ASSERT_TRUE(resp);
    EXPECT_FALSE(resp->success());
    EXPECT_NE(resp->cr_errmsg().find("freeze_cgroup"), std::string::npos) << resp->cr_errmsg();
    EXPECT_NE(resp->cr_errmsg().find(std::to_string(other.pid())), std::string::npos) << resp->cr_errmsg();
    EXPECT_EQ(client.wait_exit(), 1);
  }
  // Alone in it, the job is dumped.
  move(base, other.pid());
  SwrkClient client;
  client.send(req);
  std::vector<std::string> scripts;
  auto resp = answer_notifications(client, &scripts);
  ASSERT_TRUE(resp);
  EXPECT_TRUE(resp->success()) << resp->cr_errmsg();
  EXPECT_EQ(client.wait_exit(), 0);
  EXPECT_TRUE(job.alive());
  move(base, job.pid());
}

criu_req restore_request(int images_fd) {
  criu_req req = request(criu::RESTORE);
  criu::criu_opts* o = req.mutable_opts();
  // As runc 1.1.5 sets them for `runc restore` (root: its criu-root; here none is dumped).
  o->set_images_dir_fd(images_fd);
  o->set_evasive_devices(true);
  o->set_log_level(4);
  o->set_log_file("restore.log");
  o->set_rst_sibling(true);
  o->set_root("/");
  o->set_manage_cgroups(true);
  o->set_notify_scripts(true);
  o->set_shell_job(false);
  o->set_ext_unix_sk(false);
  o->set_tcp_established(false);
  o->set_file_locks(false);
  o->set_empty_ns(0);
  o->set_orphan_pts_master(true);
  o->set_auto_dedup(false);
  o->set_lazy_pages(false);
  o->set_config_file("/etc/criu/runc.conf.absent-for-stasis-tests");
  return req;
}

// The notifications of a restore, each with its pid, answered until the final response;
// fail_at is answered with notify_success = false.
struct Notified {
  std::vector<std::string> scripts;
  pid_t pid = 0;  // of the last notification that carried one
};
std::optional<criu_resp> answer_restore(SwrkClient& client, Notified* seen, const std::string& fail_at = "") {
  for (int i = 0; i < 16; ++i) {
    auto resp = client.receive();
    if (!resp || resp->type() != criu::NOTIFY) return resp;
    seen->scripts.push_back(resp->notify().script());
    if (resp->notify().pid() > 0) seen->pid = resp->notify().pid();
    criu_req ack = request(criu::NOTIFY);
    ack.set_notify_success(resp->notify().script() != fail_at);
    client.send(ack);
  }
  return std::nullopt;
}

// A child of ours by pid (the restored PID 1, which swrk made our child as runc's), killed
// and reaped in every path.
struct ReapedChild {
  pid_t pid = -1;
  ~ReapedChild() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
};

pid_t parent_of(pid_t pid) {
  std::string status = slurp(fmt::format("/proc/{}/status", pid));
  size_t at = status.find("PPid:");
  return at == std::string::npos ? -1 : std::atoi(status.c_str() + at + 5);
}

// Without leave_running the job is dumped, then killed; RESTORE brings it back as runc
// wants it: PID 1 of a new PID namespace, a child of the client, its pid in post-restore and
// in the response, after every notification runc acts on, in CRIU's order.
TEST(CriuRpc, DumpEndsTheJobAndRestoreMakesItAChildOfTheClient) {
  TempDir dir("stasis-criu");
  OpenDir images(dir.path());
  {
    Counter job;
    criu_req req = dump_request(images.fd(), job.pid());
    req.mutable_opts()->set_leave_running(false);
    SwrkClient client;
    client.send(req);
    std::vector<std::string> scripts;
    auto resp = answer_notifications(client, &scripts);
    ASSERT_TRUE(resp);
    EXPECT_TRUE(resp->success()) << resp->cr_errmsg() << "\n" << slurp(dir.path() / "dump.log");
    EXPECT_EQ(client.wait_exit(), 0);
    int status = 0;
    EXPECT_TRUE(wait_until([&] { return ::waitpid(job.pid(), &status, WNOHANG) == job.pid(); }, 10s));
  }
  SwrkClient client;
  client.send(restore_request(images.fd()));
  Notified seen;
  auto resp = answer_restore(client, &seen);
  ASSERT_TRUE(resp);
  ReapedChild restored{resp->has_restore() ? resp->restore().pid() : -1};
  ASSERT_TRUE(resp->success()) << resp->cr_errmsg() << "\n" << slurp(dir.path() / "restore.log");
  EXPECT_EQ(resp->type(), criu::RESTORE);
  EXPECT_EQ(seen.scripts, (std::vector<std::string>{"setup-namespaces", "post-setup-namespaces", "post-restore",
                                                     "network-unlock", "pre-resume", "post-resume"}));
  EXPECT_EQ(seen.pid, restored.pid);
  EXPECT_EQ(client.wait_exit(), 0);
  EXPECT_EQ(parent_of(restored.pid), ::getpid());
  EXPECT_NE(namespace_id(restored.pid, "pid"), namespace_id(::getpid(), "pid"));
  // The job itself, under our init (it was not PID 1 when dumped), runs.
  ASSERT_TRUE(wait_until([&] { return !slurp(fmt::format("/proc/{}/task/{}/children", restored.pid, restored.pid)).empty(); }, 5s));
  // The log went to restore.log only: the client's stderr is the job's.
  EXPECT_NE(slurp(dir.path() / "restore.log").find("restored"), std::string::npos);
}

// Each restore option we do not honour: refused by name before anything is read or started.
TEST(CriuRpc, EveryUnhonouredRestoreOptionIsRefusedByName) {
  struct Case {
    std::string option;
    std::function<void(criu::criu_opts*)> set;
  };
  const std::vector<Case> cases = {
      {"rst_sibling", [](criu::criu_opts* o) { o->set_rst_sibling(false); }},
      {"external", [](criu::criu_opts* o) { o->add_external("net[4026531840]:extRootNetNS"); }},
      {"inherit_fd", [](criu::criu_opts* o) {
         auto* f = o->add_inherit_fd();
         f->set_key("extRootNetNS");
         f->set_fd(4);
       }},
      {"empty_ns", [](criu::criu_opts* o) { o->set_empty_ns(CLONE_NEWNET | CLONE_NEWIPC); }},
      {"veths", [](criu::criu_opts* o) {
         auto* v = o->add_veths();
         v->set_if_in("eth0");
         v->set_if_out("veth0");
       }},
      {"join_ns", [](criu::criu_opts* o) {
         auto* j = o->add_join_ns();
         j->set_ns("ipc");
         j->set_ns_file("/proc/1/ns/ipc");
       }},
      {"lsm_profile", [](criu::criu_opts* o) { o->set_lsm_profile("apparmor:runc-default"); }},
      {"lazy_pages", [](criu::criu_opts* o) { o->set_lazy_pages(true); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.option);
    TempDir dir("stasis-criu");
    OpenDir images(dir.path());
    criu_req req = restore_request(images.fd());
    c.set(req.mutable_opts());
    SwrkClient client;
    client.send(req);
    auto resp = client.receive();
    ASSERT_TRUE(resp);
    EXPECT_EQ(resp->type(), criu::RESTORE);
    EXPECT_FALSE(resp->success());
    EXPECT_EQ(resp->cr_errno(), EOPNOTSUPP);
    EXPECT_NE(resp->cr_errmsg().find(c.option), std::string::npos) << resp->cr_errmsg();
    EXPECT_EQ(client.wait_exit(), 1);
  }
}

// A restore that fails once the job's PID 1 exists (here: runc's post-restore action fails)
// leaves nothing: PID 1 and the job are killed before the failed response comes.
TEST(CriuRpc, FailedRestoreLeavesNothingBehind) {
  TempDir dir("stasis-criu");
  OpenDir images(dir.path());
  {
    Counter job;
    criu_req req = dump_request(images.fd(), job.pid());
    SwrkClient client;
    client.send(req);
    std::vector<std::string> scripts;
    auto resp = answer_notifications(client, &scripts);
    ASSERT_TRUE(resp && resp->success());
    EXPECT_EQ(client.wait_exit(), 0);
  }
  SwrkClient client;
  client.send(restore_request(images.fd()));
  Notified seen;
  auto resp = answer_restore(client, &seen, "post-restore");
  ASSERT_TRUE(resp);
  ReapedChild restored{seen.pid};
  EXPECT_FALSE(resp->success());
  EXPECT_NE(resp->cr_errmsg().find("post-restore"), std::string::npos) << resp->cr_errmsg();
  EXPECT_EQ(client.wait_exit(), 1);
  // PID 1 has exited already (a zombie of ours now), its namespace gone with it.
  ASSERT_GT(seen.pid, 0);
  int status = 0;
  EXPECT_EQ(::waitpid(seen.pid, &status, WNOHANG), seen.pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  restored.pid = -1;
  EXPECT_NE(slurp(dir.path() / "restore.log").find("post-restore"), std::string::npos);

  // Images that are not a checkpoint: refused before anything starts, naming what is wrong.
  TempDir empty("stasis-criu");
  OpenDir none(empty.path());
  SwrkClient again;
  again.send(restore_request(none.fd()));
  Notified none_seen;
  auto refused = answer_restore(again, &none_seen);
  ASSERT_TRUE(refused);
  EXPECT_FALSE(refused->success());
  EXPECT_TRUE(none_seen.scripts.empty());
  EXPECT_NE(refused->cr_errmsg().find("inventory"), std::string::npos) << refused->cr_errmsg();
  EXPECT_EQ(again.wait_exit(), 1);
}

TEST(CriuRpc, DumpAsRuncAsksIt) {
  Counter job;
  TempDir dir("stasis-criu");
  // runc writes descriptors.json into the images directory before it asks.
  const std::string descriptors = R"(["/dev/null","/dev/null","/dev/null"])";
  std::ofstream(dir.path() / "descriptors.json") << descriptors;
  OpenDir images(dir.path());
  SwrkClient client;
  client.send(dump_request(images.fd(), job.pid()));
  std::vector<std::string> scripts;
  auto resp = answer_notifications(client, &scripts);
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->type(), criu::DUMP);
  EXPECT_TRUE(resp->success()) << resp->cr_errmsg() << "\n" << slurp(dir.path() / "dump.log");
  EXPECT_EQ(client.wait_exit(), 0);
  // The job shares our network namespace: no network-lock.
  EXPECT_EQ(scripts, (std::vector<std::string>{"pre-dump", "post-dump"}));
  EXPECT_TRUE(job.alive());
  EXPECT_EQ(slurp(dir.path() / "descriptors.json"), descriptors);
  EXPECT_NE(slurp(dir.path() / "dump.log").find("dumped pid"), std::string::npos);
  auto verify = run_stasis({"show", "--verify", dir.path().string()});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  // stats-dump as go-criu reads it: two magic numbers and a size, then a stats_entry.
  std::string stats = slurp(dir.path() / "stats-dump");
  ASSERT_GT(stats.size(), 12u);
  EXPECT_EQ(stats.substr(0, 8), std::string("\x40\x59\x10\x55\x06\x33\x09\x57", 8));
  criu::stats_entry entry;
  ASSERT_TRUE(entry.ParseFromString(stats.substr(12)));
  ASSERT_TRUE(entry.has_dump());
  EXPECT_GT(entry.dump().pages_scanned(), 0u);
  EXPECT_GT(entry.dump().frozen_time(), 0u);

  // podman dumps every checkpoint of a container into the same directory, as CRIU overwrites:
  // a failed dump there leaves the previous checkpoint whole, a complete one replaces it.
  const std::string first_inventory = slurp(dir.path() / "inventory.img");
  {
    SwrkClient again;
    again.send(dump_request(images.fd(), job.pid()));
    std::vector<std::string> scripts2;
    auto failed = answer_notifications(again, &scripts2, "pre-dump");
    ASSERT_TRUE(failed);
    EXPECT_FALSE(failed->success());
    EXPECT_EQ(again.wait_exit(), 1);
    EXPECT_EQ(slurp(dir.path() / "inventory.img"), first_inventory);
    EXPECT_EQ(run_stasis({"show", "--verify", dir.path().string()}).exit_code, 0);
  }
  {
    SwrkClient again;
    again.send(dump_request(images.fd(), job.pid()));
    std::vector<std::string> scripts2;
    auto replaced = answer_notifications(again, &scripts2);
    ASSERT_TRUE(replaced);
    EXPECT_TRUE(replaced->success()) << replaced->cr_errmsg();
    EXPECT_EQ(again.wait_exit(), 0);
    EXPECT_NE(slurp(dir.path() / "inventory.img"), first_inventory);
    EXPECT_EQ(run_stasis({"show", "--verify", dir.path().string()}).exit_code, 0);
  }
  EXPECT_EQ(slurp(dir.path() / "descriptors.json"), descriptors);
  const std::string aside = fmt::format(".{}.stasis-previous", dir.path().filename().string());
  for (const auto& e : fs::directory_iterator(dir.path().parent_path()))
    EXPECT_NE(e.path().filename().string().rfind(aside, 0), 0u) << e.path();
  // Files that are not a checkpoint of ours are refused before anything is touched.
  std::ofstream(dir.path() / "someone-elses") << "x";
  SwrkClient refused;
  refused.send(dump_request(images.fd(), job.pid()));
  std::vector<std::string> scripts3;
  auto resp3 = answer_notifications(refused, &scripts3);
  ASSERT_TRUE(resp3);
  EXPECT_FALSE(resp3->success());
  EXPECT_NE(resp3->cr_errmsg().find("not a stasis checkpoint"), std::string::npos) << resp3->cr_errmsg();
  EXPECT_EQ(refused.wait_exit(), 1);
  EXPECT_EQ(run_stasis({"show", "--verify", dir.path().string()}).exit_code, 0);
  EXPECT_TRUE(job.alive());
}

TEST(CriuRpc, FailedNotificationFailsTheDumpAndLeavesTheJob) {
  Counter job;
  TempDir dir("stasis-criu");
  OpenDir images(dir.path());
  SwrkClient client;
  client.send(dump_request(images.fd(), job.pid()));
  std::vector<std::string> scripts;
  auto resp = answer_notifications(client, &scripts, "pre-dump");
  ASSERT_TRUE(resp);
  EXPECT_FALSE(resp->success());
  EXPECT_NE(resp->cr_errmsg().find("pre-dump"), std::string::npos) << resp->cr_errmsg();
  EXPECT_EQ(client.wait_exit(), 1);
  EXPECT_TRUE(job.alive());
  EXPECT_FALSE(fs::exists(dir.path() / "inventory.img"));
  EXPECT_TRUE(fs::exists(dir.path() / "dump.log"));
}


// --- runc itself (Debian's runc 1.1.5), with stasis as its CRIU.

// A runc container of one python3 process counting into /state/counter, its rootfs made of
// the host's /usr (bind-mounted read-only) and empty directories; deleted in every path.
class RuncContainer {
 public:
  // console_socket: the container is on a terminal runc makes, its master sent there.
  explicit RuncContainer(const std::string& program = "", const std::string& console_socket = "")
      : id_("stasis-criu-test-" + std::to_string(::getpid())) {
    write_runc_counter_bundle(bundle_.path(), "criu-test", program, !console_socket.empty());
    // Its stdio is /dev/null: a pipe of ours would keep run_command waiting for the job.
    const std::string console = console_socket.empty() ? "" : " --console-socket " + console_socket;
    started_ = run_command({"sh", "-c", "exec runc run -d" + console + " -b " + bundle_.path().string() + " " + id_ +
                                            " </dev/null >/dev/null 2>&1"})
                   .exit_code == 0;
  }
  ~RuncContainer() { run_command({"runc", "delete", "-f", id_}); }
  RuncContainer(const RuncContainer&) = delete;
  RuncContainer& operator=(const RuncContainer&) = delete;

  bool started() const { return started_; }
  const std::string& id() const { return id_; }
  long counter(const char* file = "counter") const {
    std::string text = slurp(bundle_.path() / "rootfs/state" / file);
    return text.empty() ? 0 : std::atol(text.c_str());
  }
  bool running() const {
    return run_command({"runc", "state", id_}).out.find("\"status\": \"running\"") != std::string::npos;
  }
  // The container's PID 1 (runc state), or -1.
  pid_t init_pid() const {
    std::string out = run_command({"runc", "state", id_}).out;
    size_t at = out.find("\"pid\": ");
    return at == std::string::npos ? -1 : std::atoi(out.c_str() + at + 7);
  }
  // `runc --criu stasis checkpoint ARGS... ID`.
  CommandResult checkpoint(const fs::path& images, std::vector<std::string> args = {}) const {
    std::vector<std::string> cmd{"runc", "--criu", stasis_binary(), "checkpoint", "--image-path", images.string()};
    cmd.insert(cmd.end(), args.begin(), args.end());
    cmd.push_back(id_);
    return run_command(cmd, 120s);
  }
  // `runc --criu stasis restore -d ARGS... ID` from the bundle, its stdio /dev/null as at
  // `run` (runc's stderr into a file: the job must not hold a pipe of ours).
  CommandResult restore(const fs::path& images, const std::vector<std::string>& args = {}) const {
    std::string cmd = "exec runc --criu " + stasis_binary() + " restore -d -b " + bundle_.path().string() +
                      " --image-path " + images.string();
    for (const auto& a : args) cmd += " " + a;
    const fs::path err = bundle_.path() / "restore.err";
    cmd += " " + id_ + " </dev/null >/dev/null 2>" + err.string();
    CommandResult r = run_command({"sh", "-c", cmd}, 120s);
    r.err += slurp(err);
    return r;
  }
  const fs::path& bundle() const { return bundle_.path(); }

 private:
  TempDir bundle_{"stasis-criu-bundle"};
  std::string id_;
  bool started_ = false;
};

bool have_runc() { return run_command({"sh", "-c", "command -v runc"}).exit_code == 0; }

TEST(CriuRpcRunc, CheckpointLeaveRunning) {
  if (!have_runc()) GTEST_SKIP() << "runc is not installed (scripts/setup installs Debian's runc)";
  RuncContainer c;
  ASSERT_TRUE(c.started());
  ASSERT_TRUE(wait_until([&] { return c.counter() > 0; }, 20s));
  TempDir images("stasis-criu-images");
  auto r = run_command({"runc", "--criu", stasis_binary(), "checkpoint", "--leave-running", "--image-path",
                        images.path().string(), c.id()});
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(images.path() / "dump.log");
  EXPECT_TRUE(fs::exists(images.path() / "descriptors.json"));
  auto verify = run_stasis({"show", "--verify", images.path().string()});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  // runc's container has a network namespace of its own: runc detaches its network around
  // the dump (nothing to do for one with only a loopback, but the notifications come).
  std::string log = slurp(images.path() / "dump.log");
  EXPECT_NE(log.find("notify network-lock"), std::string::npos) << log;
  EXPECT_NE(log.find("notify network-unlock"), std::string::npos) << log;
  // The container goes on counting.
  EXPECT_TRUE(c.running());
  long before = c.counter();
  EXPECT_TRUE(wait_until([&] { return c.counter() > before; }, 10s));

  // Again, with what kubelet's checkpoint API has CRI-O pass (--file-locks, a --work-path,
  // which takes the log) and the permissions runc users add.
  TempDir images2("stasis-criu-images");
  TempDir work("stasis-criu-work");
  r = run_command({"runc", "--criu", stasis_binary(), "checkpoint", "--leave-running", "--file-locks",
                   "--tcp-established", "--ext-unix-sk", "--shell-job", "--image-path", images2.path().string(),
                   "--work-path", work.path().string(), c.id()});
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(work.path() / "dump.log");
  EXPECT_TRUE(fs::exists(work.path() / "dump.log"));
  EXPECT_FALSE(fs::exists(images2.path() / "dump.log"));
  EXPECT_EQ(run_stasis({"show", "--verify", images2.path().string()}).exit_code, 0);
  EXPECT_TRUE(c.running());
}

// The counter goes on from where it was dumped (it does not start over at 1), in the
// restored container that runc knows as running.
void expect_counts_on(const RuncContainer& c, long at_dump, const char* file = "counter") {
  ASSERT_TRUE(wait_until([&] { return c.counter(file) > at_dump; }, 20s)) << file;
  const long first = c.counter(file);
  EXPECT_TRUE(wait_until([&] { return c.counter(file) > first + 5; }, 10s)) << file;
  EXPECT_GE(first, at_dump) << file;
}

// `runc checkpoint` without --leave-running ends the container; `runc restore` brings it back
// through `stasis swrk`: runc's state says running, its PID 1 is the restored counter, which
// goes on counting; `runc delete -f` ends it as any container.
TEST(CriuRpcRunc, CheckpointAndRestore) {
  if (!have_runc()) GTEST_SKIP() << "runc is not installed (scripts/setup installs Debian's runc)";
  RuncContainer c;
  ASSERT_TRUE(c.started());
  ASSERT_TRUE(wait_until([&] { return c.counter() > 0; }, 20s));
  TempDir images("stasis-criu-images");
  auto r = c.checkpoint(images.path());
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(images.path() / "dump.log");
  EXPECT_FALSE(c.running());
  const long at_dump = c.counter();
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(c.counter(), at_dump);  // it is gone

  r = c.restore(images.path());
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(images.path() / "restore.log");
  EXPECT_TRUE(c.running());
  const pid_t init = c.init_pid();
  ASSERT_GT(init, 0);
  EXPECT_NE(slurp(fmt::format("/proc/{}/cmdline", init)).find("python3"), std::string::npos);
  EXPECT_NE(namespace_id(init, "pid"), namespace_id(::getpid(), "pid"));
  expect_counts_on(c, at_dump);
  // In runc's cgroup of the container (runc's `ps` lists it from there).
  EXPECT_NE(run_command({"runc", "ps", c.id()}).out.find(std::to_string(init)), std::string::npos);
  // Nothing of ours went to the job's stderr, which was swrk's.
  EXPECT_EQ(r.err.find("stasis:"), std::string::npos) << r.err;

  // And again, from the restored container.
  TempDir images2("stasis-criu-images");
  r = c.checkpoint(images2.path());
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(images2.path() / "dump.log");
  const long at_dump2 = c.counter();
  r = c.restore(images2.path());
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(images2.path() / "restore.log");
  expect_counts_on(c, at_dump2);
  EXPECT_EQ(run_command({"runc", "delete", "-f", c.id()}).exit_code, 0);
  EXPECT_FALSE(process_alive(c.init_pid()));
}

// --leave-running, then the container deleted: the checkpoint restores as well.
TEST(CriuRpcRunc, RestoreAfterLeaveRunning) {
  if (!have_runc()) GTEST_SKIP() << "runc is not installed (scripts/setup installs Debian's runc)";
  RuncContainer c;
  ASSERT_TRUE(c.started());
  ASSERT_TRUE(wait_until([&] { return c.counter() > 0; }, 20s));
  TempDir images("stasis-criu-images");
  TempDir work("stasis-criu-work");
  // As kubelet's checkpoint API has CRI-O ask it.
  auto r = c.checkpoint(images.path(), {"--leave-running", "--file-locks", "--work-path", work.path().string()});
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(work.path() / "dump.log");
  EXPECT_TRUE(c.running());
  ASSERT_EQ(run_command({"runc", "delete", "-f", c.id()}).exit_code, 0);
  const long at_delete = c.counter();
  r = c.restore(images.path(), {"--file-locks", "--work-path", work.path().string()});
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(work.path() / "restore.log");
  EXPECT_TRUE(c.running());
  // From where it was at the checkpoint: below the count at the delete, then past it.
  ASSERT_TRUE(wait_until([&] { return c.counter() > at_delete + 5; }, 20s));
}

// A container of two processes (python3 forks a second counter): both come back, the child
// under the restored PID 1.
TEST(CriuRpcRunc, RestoreProcessTree) {
  if (!have_runc()) GTEST_SKIP() << "runc is not installed (scripts/setup installs Debian's runc)";
  RuncContainer c(
      "import os,time,itertools\\n"
      "name = 'child' if os.fork() == 0 else 'counter'\\n"
      "[(open('/state/' + name,'w').write(str(i)),time.sleep(0.05)) for i in itertools.count(1)]");
  ASSERT_TRUE(c.started());
  ASSERT_TRUE(wait_until([&] { return c.counter() > 0 && c.counter("child") > 0; }, 20s));
  TempDir images("stasis-criu-images");
  auto r = c.checkpoint(images.path());
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(images.path() / "dump.log");
  const long parent_at = c.counter(), child_at = c.counter("child");
  r = c.restore(images.path());
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(images.path() / "restore.log");
  expect_counts_on(c, parent_at);
  expect_counts_on(c, child_at, "child");
  const pid_t init = c.init_pid();
  EXPECT_FALSE(slurp(fmt::format("/proc/{}/task/{}/children", init, init)).empty());
}

// runc's incremental checkpoints: --pre-dump (our dump --pre-dump: memory only, the job runs
// on and is tracked), then the checkpoint on it (--parent-path, relative to the images
// directory), which saves only what was written since; the restore reads the chain.
TEST(CriuRpcRunc, PreDumpThenCheckpointOnItAndRestore) {
  if (!have_runc()) GTEST_SKIP() << "runc is not installed (scripts/setup installs Debian's runc)";
  STASIS_REQUIRE_FEATURE("dirty-tracking");
  RuncContainer c;
  ASSERT_TRUE(c.started());
  ASSERT_TRUE(wait_until([&] { return c.counter() > 0; }, 20s));
  TempDir top("stasis-criu-images");
  const fs::path pre = top.path() / "pre", final = top.path() / "final";
  fs::create_directories(pre);
  fs::create_directories(final);
  auto r = c.checkpoint(pre, {"--pre-dump"});
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(pre / "dump.log");
  EXPECT_TRUE(c.running());
  const long after_pre = c.counter();
  EXPECT_TRUE(wait_until([&] { return c.counter() > after_pre; }, 10s));
  r = c.checkpoint(final, {"--parent-path", "../pre"});
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(final / "dump.log");
  EXPECT_NE(slurp(final / "dump.log").find("parent"), std::string::npos);
  auto show = run_stasis({"show", "--verify", final.string()});
  EXPECT_EQ(show.exit_code, 0) << show.out << show.err;
  const long at_dump = c.counter();
  r = c.restore(final);
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(final / "restore.log");
  expect_counts_on(c, at_dump);
}

// A container holding an established TCP connection (both ends in it, over its loopback,
// echoing a count): refused without --tcp-established, with the container running on; with
// it, checkpointed and restored through runc, the count goes on over the same connection.
TEST(CriuRpcRunc, TcpEstablishedConnectionComesBack) {
  if (!have_runc()) GTEST_SKIP() << "runc is not installed (scripts/setup installs Debian's runc)";
  RuncContainer c(
      "import socket,threading,time,itertools\\n"
      "s=socket.socket()\\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\\n"
      "s.bind(('127.0.0.1',7000))\\ns.listen()\\n"
      "k=socket.create_connection(('127.0.0.1',7000))\\nc=s.accept()[0]\\n"
      "def echo():\\n while True: c.sendall(c.recv(64))\\n"
      "threading.Thread(target=echo,daemon=True).start()\\n"
      "for i in itertools.count(1):\\n"
      " m=b'%d.' % i\\n k.sendall(m)\\n g=b''\\n"
      " while len(g)<len(m): g+=k.recv(64)\\n"
      " if g!=m: break\\n"
      " open('/state/counter','w').write(str(i))\\n time.sleep(0.05)");
  ASSERT_TRUE(c.started());
  ASSERT_TRUE(wait_until([&] { return c.counter() > 0; }, 20s));
  TempDir refused("stasis-criu-images");
  auto r = c.checkpoint(refused.path());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(slurp(refused.path() / "dump.log").find("--tcp-established"), std::string::npos)
      << slurp(refused.path() / "dump.log");
  EXPECT_TRUE(c.running());
  long before = c.counter();
  ASSERT_TRUE(wait_until([&] { return c.counter() > before; }, 10s)) << "the refused dump stopped the container";

  TempDir images("stasis-criu-images");
  r = c.checkpoint(images.path(), {"--tcp-established"});
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(images.path() / "dump.log");
  const long at_dump = c.counter();
  r = c.restore(images.path(), {"--tcp-established"});
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(images.path() / "restore.log");
  EXPECT_TRUE(c.running());
  expect_counts_on(c, at_dump);
}

// runc's --console-socket: runc sends the master of the container's terminal there
// (SCM_RIGHTS), at `run` and, from the restore's orphan-pts-master, at `restore`.
class ConsoleSocket {
 public:
  ConsoleSocket() : listener_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path().c_str());
    started_ = listener_ && ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
               ::listen(listener_.get(), 4) == 0;
  }
  bool started() const { return started_; }
  std::string path() const { return (dir_.path() / "console.sock").string(); }
  // The next master runc sent (it connected and sent before its command returned); invalid
  // when none comes within 10 s.
  UniqueFd receive() {
    pollfd p{listener_.get(), POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return {};
    UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!c) return {};
    char buf[256];
    iovec iov{buf, sizeof buf};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    p = {c.get(), POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1 || ::recvmsg(c.get(), &m, MSG_CMSG_CLOEXEC) < 0) return {};
    cmsghdr* h = CMSG_FIRSTHDR(&m);
    if (!h || h->cmsg_type != SCM_RIGHTS) return {};
    int fd;
    std::memcpy(&fd, CMSG_DATA(h), sizeof fd);
    return UniqueFd(fd);
  }

 private:
  TempDir dir_{"stasis-console"};
  UniqueFd listener_;
  bool started_ = false;
};

// Reads the terminal's master until `want` has come out (true), or 20 s pass.
bool read_until(int master, const std::string& want, std::string& seen) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (seen.find(want) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{master, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1) return false;
    char buf[512];
    ssize_t n = ::read(master, buf, sizeof buf);
    if (n <= 0) return false;
    seen.append(buf, static_cast<size_t>(n));
  }
  return true;
}

// A container on a terminal (`terminal: true`, the master sent to runc's --console-socket):
// the checkpoint takes the terminal as made outside the job; `runc restore --console-socket`
// gets the master of a new one (orphan-pts-master) with the dumped window size; what is
// typed there reaches the job, whose terminal is still its controlling one, and its answers
// come out there.
TEST(CriuRpcRunc, TerminalContainerComesBackOnANewConsole) {
  if (!have_runc()) GTEST_SKIP() << "runc is not installed (scripts/setup installs Debian's runc)";
  ConsoleSocket console;
  ASSERT_TRUE(console.started());
  RuncContainer c(
      "import os,sys,threading,time,itertools\\n"
      "def count():\\n"
      " for i in itertools.count(1): open('/state/counter','w').write(str(i)); time.sleep(0.05)\\n"
      "threading.Thread(target=count,daemon=True).start()\\n"
      "for line in sys.stdin:\\n"
      " w=line.strip(); open('/state/lines','a').write(w+'\\\\n')\\n"
      " if w=='size': print('size', os.get_terminal_size(0).columns, flush=True)\\n"
      " elif w=='ctty': print('ctty', os.tcgetpgrp(os.open('/dev/tty', os.O_RDWR)), flush=True)\\n"
      " else: print('got', w, flush=True)",
      console.path());
  ASSERT_TRUE(c.started());
  UniqueFd first = console.receive();
  ASSERT_TRUE(first) << "runc sent no terminal to its --console-socket";
  winsize ws{33, 101, 0, 0};
  ASSERT_EQ(::ioctl(first.get(), TIOCSWINSZ, &ws), 0);
  ASSERT_TRUE(wait_until([&] { return c.counter() > 0; }, 20s));
  std::string seen;
  ASSERT_EQ(::write(first.get(), "one\n", 4), 4);
  ASSERT_TRUE(read_until(first.get(), "got one", seen)) << seen;

  TempDir images("stasis-criu-images");
  auto r = c.checkpoint(images.path());
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(images.path() / "dump.log");
  const long at_dump = c.counter();
  first.reset();
  r = c.restore(images.path(), {"--console-socket", console.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(images.path() / "restore.log");
  UniqueFd master = console.receive();
  ASSERT_TRUE(master) << "the restore sent no terminal to runc's --console-socket";
  EXPECT_TRUE(c.running());
  expect_counts_on(c, at_dump);
  seen.clear();
  ASSERT_EQ(::write(master.get(), "two\n", 4), 4);
  EXPECT_TRUE(read_until(master.get(), "got two", seen)) << seen;
  ASSERT_EQ(::write(master.get(), "size\n", 5), 5);
  EXPECT_TRUE(read_until(master.get(), "size 101", seen)) << seen;
  // Still its session's controlling terminal, PID 1's group in the foreground.
  ASSERT_EQ(::write(master.get(), "ctty\n", 5), 5);
  EXPECT_TRUE(read_until(master.get(), "ctty 1", seen)) << seen;
  EXPECT_EQ(slurp(c.bundle() / "rootfs/state/lines"), "one\ntwo\nsize\nctty\n");
}

// A restore that fails once the job's processes exist (a page file changed since the
// checkpoint: caught as its pages go in) fails runc's request with the reason in restore.log,
// and leaves no process behind.
TEST(CriuRpcRunc, FailedRestoreLeavesNothing) {
  if (!have_runc()) GTEST_SKIP() << "runc is not installed (scripts/setup installs Debian's runc)";
  RuncContainer c;
  ASSERT_TRUE(c.started());
  ASSERT_TRUE(wait_until([&] { return c.counter() > 0; }, 20s));
  TempDir images("stasis-criu-images");
  auto r = c.checkpoint(images.path());
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << slurp(images.path() / "dump.log");
  bool changed = false;
  for (const auto& e : fs::directory_iterator(images.path())) {
    if (e.path().filename().string().rfind("pages-", 0) != 0) continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-1, std::ios::end);
    f.put('\x5a');
    changed = true;
  }
  ASSERT_TRUE(changed);
  r = c.restore(images.path());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("errno"), std::string::npos) << r.err;
  const std::string log = slurp(images.path() / "restore.log");
  EXPECT_NE(log.find("pages-"), std::string::npos) << log;
  EXPECT_FALSE(c.running());
  // Nothing of the job is left: no python3 writing into the bundle.
  const long after = c.counter();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(c.counter(), after);
}

// --- podman (Debian's 4.3, with runc), which runs `criu` from PATH: a link to stasis there.

// Unmounts whatever is mounted under dir (deepest first): what podman may leave there.
void unmount_under(const fs::path& dir) {
  std::vector<std::string> points;
  std::istringstream in(slurp("/proc/self/mountinfo"));
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string id, parent, dev, root, point;
    words >> id >> parent >> dev >> root >> point;
    if (point.rfind(dir.string() + "/", 0) == 0) points.push_back(point);
  }
  std::sort(points.rbegin(), points.rend());
  for (const auto& p : points) ::umount2(p.c_str(), MNT_DETACH);
}

// podman with everything of its own under one folder of the test (storage on vfs, run root,
// tmpdir, events), runc as its runtime, stasis as its `criu`; an image imported from a local
// rootfs of empty folders (no registry), run with the host's /usr bound read-only and a
// host folder at /state, where the python3 counter writes.
class Podman {
 public:
  Podman()
      : name_("stasis-criu-test-" + std::to_string(::getpid())),
        image_("localhost/stasis-criu-test:" + std::to_string(::getpid())) {
    fs::create_symlink(stasis_binary(), dir_.path() / "criu");
    const fs::path rootfs = dir_.path() / "rootfs";
    for (const char* d : {"usr", "proc", "dev", "sys", "tmp", "state", "etc", "run"}) fs::create_directories(rootfs / d);
    for (const char* l : {"bin", "lib", "lib64", "sbin"}) fs::create_symlink(std::string("usr/") + l, rootfs / l);
    fs::create_directories(state());
    const fs::path tar = dir_.path() / "rootfs.tar";
    imported_ = run_command({"tar", "-C", rootfs.string(), "-cf", tar.string(), "."});
    if (imported_.exit_code == 0) imported_ = podman({"import", tar.string(), image_});
  }
  ~Podman() {
    podman({"rm", "-a", "-f", "-t", "0"});
    podman({"rmi", "-a", "-f"});
    unmount_under(dir_.path());
  }
  Podman(const Podman&) = delete;
  Podman& operator=(const Podman&) = delete;

  CommandResult podman(std::vector<std::string> args) const {
    const char* path = std::getenv("PATH");
    const fs::path& d = dir_.path();
    args.insert(args.begin(), {"env", "PATH=" + d.string() + ":" + (path ? path : "/usr/bin:/bin"), "podman",
                               "--root", (d / "storage").string(), "--runroot", (d / "run").string(), "--tmpdir",
                               (d / "tmp").string(), "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                               "--events-backend", "file", "--runtime", "runc"});
    return run_command(args, 120s);
  }
  // Why podman cannot run here ("" when the image was imported).
  std::string unusable() const { return imported_.exit_code == 0 ? "" : imported_.out + imported_.err; }
  // The python3 counter; with `terminal`, on a terminal (`podman run -t`) it also prints each count.
  CommandResult run(bool terminal = false) const {
    // The VM's hard RLIMIT_NOFILE and RLIMIT_NPROC are below podman's defaults for containers.
    return podman({"run", terminal ? "-dt" : "-d", "--name", name_, "--ulimit", "nofile=1024:1024", "--ulimit",
                   "nproc=1024:1024", "--network", "none", "-v", "/usr:/usr:ro", "-v", state().string() + ":/state",
                   image_, "python3", "-c",
                   terminal ? "import time,itertools\nfor i in itertools.count(1):\n open('/state/counter','w')"
                              ".write(str(i)); print('count', i, flush=True); time.sleep(0.05)"
                            : "import time,itertools\n[(open('/state/counter','w').write(str(i)),time.sleep(0.05)) "
                              "for i in itertools.count(1)]"});
  }
  const std::string& name() const { return name_; }
  fs::path state() const { return dir_.path() / "state"; }
  fs::path dir() const { return dir_.path(); }
  long counter() const {
    std::string text = slurp(state() / "counter");
    return text.empty() ? 0 : std::atol(text.c_str());
  }
  std::string status() const { return podman({"inspect", name_, "--format", "{{.State.Status}}"}).out; }

 private:
  TempDir dir_{"stasis-criu-podman"};
  std::string name_, image_;
  CommandResult imported_;
};

bool have_podman() { return run_command({"sh", "-c", "command -v podman && command -v runc"}).exit_code == 0; }

TEST(CriuRpcPodman, CheckpointLeaveRunningWithStatsAndExport) {
  if (!have_podman()) GTEST_SKIP() << "podman or runc is not installed (Debian's podman 4.3 and runc 1.1.5)";
  Podman p;
  if (!p.unusable().empty()) GTEST_SKIP() << "podman cannot import an image here: " << p.unusable();
  auto r = p.run();
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(wait_until([&] { return p.counter() > 0; }, 30s));
  // podman asks our VERSION through `criu` on PATH, runc runs the same `criu swrk 3`, and
  // --print-stats reads our stats-dump.
  r = p.podman({"container", "checkpoint", "--leave-running", "--keep", "--print-stats", p.name()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("\"criu_statistics\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"pages_scanned\""), std::string::npos) << r.out;
  // Again into the same directory (podman's own), then into an archive.
  const fs::path archive = p.dir() / "ckpt.tar.zst";
  r = p.podman({"container", "checkpoint", "--leave-running", "--export", archive.string(), p.name()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto list = run_command({"tar", "-tf", archive.string()});
  EXPECT_NE(list.out.find("checkpoint/inventory.img"), std::string::npos) << list.out << list.err;
  EXPECT_NE(list.out.find("stats-dump"), std::string::npos) << list.out;
  EXPECT_NE(p.status().find("running"), std::string::npos);
  long before = p.counter();
  EXPECT_TRUE(wait_until([&] { return p.counter() > before; }, 10s));
}

// `podman container checkpoint` ends the container, `podman container restore` brings it back
// through runc and `stasis swrk` (conmon's stdio pipes given back by inherit_fd); then the same
// through an archive: --export, the container removed, restore --import.
TEST(CriuRpcPodman, CheckpointAndRestoreThenExportAndImport) {
  if (!have_podman()) GTEST_SKIP() << "podman or runc is not installed (Debian's podman 4.3 and runc 1.1.5)";
  Podman p;
  if (!p.unusable().empty()) GTEST_SKIP() << "podman cannot import an image here: " << p.unusable();
  auto r = p.run();
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(wait_until([&] { return p.counter() > 0; }, 30s));
  r = p.podman({"container", "checkpoint", p.name()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(p.status().find("running"), std::string::npos) << p.status();
  const long at_dump = p.counter();
  r = p.podman({"container", "restore", p.name()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(p.status().find("running"), std::string::npos) << p.status();
  ASSERT_TRUE(wait_until([&] { return p.counter() > at_dump + 5; }, 20s));

  const fs::path archive = p.dir() / "ckpt.tar.zst";
  r = p.podman({"container", "checkpoint", "--export", archive.string(), p.name()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const long at_export = p.counter();
  ASSERT_EQ(p.podman({"rm", "-f", p.name()}).exit_code, 0);
  r = p.podman({"container", "restore", "--import", archive.string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(p.status().find("running"), std::string::npos) << p.status();
  ASSERT_TRUE(wait_until([&] { return p.counter() > at_export + 5; }, 20s));
}

// `podman run -t`: conmon holds the terminal's master (runc hands it over the console socket).
// Checkpointed and restored, the job is on a new terminal, its controlling one, whose master
// conmon got back through runc (orphan-pts-master): what the job prints after the restore
// reaches `podman logs`.
TEST(CriuRpcPodman, TerminalContainerComesBackOnANewConsole) {
  if (!have_podman()) GTEST_SKIP() << "podman or runc is not installed (Debian's podman 4.3 and runc 1.1.5)";
  Podman p;
  if (!p.unusable().empty()) GTEST_SKIP() << "podman cannot import an image here: " << p.unusable();
  auto r = p.run(/*terminal=*/true);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(wait_until([&] { return p.counter() > 0; }, 30s));
  r = p.podman({"container", "checkpoint", p.name()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const long at_dump = p.counter();
  r = p.podman({"container", "restore", p.name()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(p.status().find("running"), std::string::npos) << p.status();
  ASSERT_TRUE(wait_until([&] { return p.counter() > at_dump + 5; }, 20s));
  const pid_t init = std::atoi(p.podman({"inspect", p.name(), "--format", "{{.State.Pid}}"}).out.c_str());
  ASSERT_GT(init, 0);
  std::error_code ec;
  EXPECT_EQ(fs::read_symlink(fmt::format("/proc/{}/fd/0", init), ec).string(), "/dev/pts/0");
  const std::string want = fmt::format("count {}", at_dump + 5);
  EXPECT_TRUE(wait_until([&] { return p.podman({"logs", p.name()}).out.find(want) != std::string::npos; }, 20s))
      << "the restored job's output did not reach podman's log";
}

}  // namespace
}  // namespace stasis::test
