// /proc parsers on /proc/self, on a forked child, and on broken input.
#include "common/proc.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/support/test_util.h"

namespace stasis::proc {
namespace {

using namespace std::chrono_literals;

using Child = stasis::test::ForkedChild;

using stasis::test::error_of;

TEST(Proc, MapsOfSelf) {
  void* anon = mmap(nullptr, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(anon, MAP_FAILED);
  auto maps = read_maps(getpid());
  ASSERT_FALSE(maps.empty());
  bool found_anon = false, found_vdso = false, found_stack = false, found_self = false;
  for (size_t i = 0; i < maps.size(); ++i) {
    const MapEntry& m = maps[i];
    EXPECT_LT(m.start, m.end);
    if (i > 0) {
      EXPECT_LE(maps[i - 1].end, m.start);
    }
    if (m.start <= reinterpret_cast<uint64_t>(anon) && reinterpret_cast<uint64_t>(anon) < m.end) {
      found_anon = true;
      EXPECT_TRUE(m.read && m.write && !m.exec && !m.shared);
      EXPECT_EQ(m.kind, VmaKind::Anonymous);
    }
    if (m.kind == VmaKind::Vdso) {
      found_vdso = true;
      EXPECT_TRUE(m.exec);
      EXPECT_TRUE(m.is_vdso_group());
    }
    if (m.kind == VmaKind::Stack) found_stack = true;
    if (m.kind == VmaKind::File && m.path.find("proc_test") != std::string::npos && m.exec) {
      found_self = true;
      EXPECT_NE(m.inode, 0u);
      EXPECT_FALSE(m.deleted);
    }
  }
  EXPECT_TRUE(found_anon && found_vdso && found_stack && found_self);
  munmap(anon, 3 * 4096);
}

TEST(Proc, SmapsHasVmFlagsAndSizes) {
  void* anon = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(anon, MAP_FAILED);
  ASSERT_EQ(madvise(anon, 4096, MADV_DONTFORK), 0);
  static_cast<char*>(anon)[0] = 1;
  auto smaps = read_smaps(getpid());
  EXPECT_GT(smaps.size(), 5u);
  bool found = false;
  for (const MapEntry& m : smaps) {
    EXPECT_FALSE(m.vm_flags.empty()) << m.path;
    if (m.start == reinterpret_cast<uint64_t>(anon)) {
      found = true;
      EXPECT_TRUE(m.has_vm_flag("rd"));
      EXPECT_TRUE(m.has_vm_flag("wr"));
      EXPECT_TRUE(m.has_vm_flag("dc"));  // MADV_DONTFORK
      EXPECT_EQ(m.sizes_kb.at("Rss"), 4u);
    }
  }
  EXPECT_TRUE(found);
  munmap(anon, 4096);
}

TEST(Proc, MapsLineForms) {
  auto m = parse_maps_line("7f0000000000-7f0000002000 r-xs 00001000 fd:01 123456     /tmp/a file (deleted)", "t", 1);
  EXPECT_EQ(m.start, 0x7f0000000000u);
  EXPECT_EQ(m.end, 0x7f0000002000u);
  EXPECT_EQ(m.perms(), "r-xs");
  EXPECT_TRUE(m.shared);
  EXPECT_EQ(m.offset, 0x1000u);
  EXPECT_EQ(m.dev_major, 0xfdu);
  EXPECT_EQ(m.dev_minor, 1u);
  EXPECT_EQ(m.inode, 123456u);
  EXPECT_EQ(m.path, "/tmp/a file");
  EXPECT_TRUE(m.deleted);
  EXPECT_EQ(m.kind, VmaKind::File);

  struct Case {
    const char* name;
    VmaKind kind;
  } cases[] = {{"[heap]", VmaKind::Heap},          {"[stack]", VmaKind::Stack},
               {"[vdso]", VmaKind::Vdso},          {"[vvar]", VmaKind::Vvar},
               {"[vvar_vclock]", VmaKind::VvarVclock}, {"[vsyscall]", VmaKind::Vsyscall},
               {"[anon:my name]", VmaKind::AnonNamed}, {"[anon_shmem:x]", VmaKind::AnonShmemNamed},
               {"[uprobes]", VmaKind::OtherSpecial}, {"", VmaKind::Anonymous}};
  for (const Case& c : cases) {
    auto e = parse_maps_line(fmt::format("1000-2000 rw-p 00000000 00:00 0    {}", c.name), "t", 1);
    EXPECT_EQ(e.kind, c.kind) << c.name;
    EXPECT_EQ(e.path, c.name);
  }
  EXPECT_EQ(parse_maps_line("1000-2000 rw-p 00000000 00:00 0  [anon:my name]", "t", 1).anon_name, "my name");
  auto zero = parse_maps_line("1000-2000 rw-s 00000000 00:01 7  /dev/zero (deleted)", "t", 1);
  EXPECT_TRUE(zero.deleted);
  EXPECT_EQ(zero.path, "/dev/zero");
}

TEST(Proc, BadInputNamesFileAndLine) {
  std::string text = "1000-2000 rw-p 00000000 00:00 0\n1000-zz rw-p 00000000 00:00 0\n";
  std::string err = error_of([&] { parse_maps(text, "/proc/7/maps"); });
  EXPECT_NE(err.find("/proc/7/maps:2"), std::string::npos) << err;
  err = error_of([&] { parse_maps("1000-2000 rwzp 0 00:00 0\n", "m"); });
  EXPECT_NE(err.find("m:1: bad permissions"), std::string::npos) << err;
  err = error_of([&] { parse_stat("12 (x) S 1 2", "/proc/12/stat"); });
  EXPECT_NE(err.find("/proc/12/stat:1"), std::string::npos) << err;
  err = error_of([&] { parse_status("Name:\tx\nPid:\tabc\n", "/proc/1/status"); });
  EXPECT_NE(err.find("/proc/1/status:2"), std::string::npos) << err;
  err = error_of([&] { parse_fdinfo("pos:\t0\nflags:\t09\n", "fdinfo/3"); });
  EXPECT_NE(err.find("fdinfo/3:2"), std::string::npos) << err;
  err = error_of([&] { parse_smaps("Rss: 4 kB\n", "smaps"); });
  EXPECT_NE(err.find("smaps:1"), std::string::npos) << err;
  err = error_of([&] { read_stat(999999999); });
  EXPECT_NE(err.find("/proc/999999999/stat"), std::string::npos) << err;
}

TEST(Proc, StatWithAwkwardComm) {
  std::string fields;
  for (int i = 3; i <= 52; ++i) {
    fields += ' ';  // appended apart: g++ 12 -O2 warns (-Wrestrict) on " " + std::to_string()
    fields += std::to_string(i == 3 ? 0 : i);
  }
  std::string text = "42 (a) b (c)) R" + fields.substr(2) + "\n";
  Stat st = parse_stat(text, "t");
  EXPECT_EQ(st.pid, 42);
  EXPECT_EQ(st.comm, "a) b (c)");
  EXPECT_EQ(st.state, 'R');
  EXPECT_EQ(st.ppid, 4);
  EXPECT_EQ(st.exit_signal, 38);
  EXPECT_EQ(st.env_end, 51u);
  EXPECT_EQ(st.exit_code, 52);
}

TEST(Proc, StatAndStatusOfChild) {
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  Child child([&] {
    prctl(PR_SET_NAME, "proc test kid");
    setpgid(0, 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    signal(SIGUSR2, SIG_IGN);
    if (write(pipefd[1], "R", 1) != 1) _exit(1);
    for (;;) pause();
  });
  char c;
  ASSERT_EQ(read(pipefd[0], &c, 1), 1);
  close(pipefd[0]);
  close(pipefd[1]);
  ASSERT_EQ(kill(child.pid(), SIGUSR1), 0);

  Stat st = read_stat(child.pid());
  EXPECT_EQ(st.pid, child.pid());
  EXPECT_EQ(st.comm, "proc test kid");
  EXPECT_EQ(st.ppid, getpid());
  EXPECT_EQ(st.pgrp, child.pid());
  EXPECT_EQ(st.session, getsid(0));
  EXPECT_EQ(st.exit_signal, SIGCHLD);
  EXPECT_EQ(st.num_threads, 1);
  EXPECT_NE(st.start_code, 0u);  // visible to us as root / parent
  EXPECT_LT(st.start_code, st.end_code);
  EXPECT_LT(st.arg_start, st.arg_end);
  EXPECT_LT(st.env_start, st.env_end);
  EXPECT_NE(st.start_brk, 0u);

  Status status = read_status(child.pid());
  EXPECT_EQ(status.name, "proc test kid");
  EXPECT_EQ(status.pid, child.pid());
  EXPECT_EQ(status.tgid, child.pid());
  EXPECT_EQ(status.ppid, getpid());
  EXPECT_EQ(status.uid[0], getuid());
  EXPECT_EQ(status.uid[1], geteuid());
  EXPECT_EQ(status.gid[0], getgid());
  ASSERT_FALSE(status.ns_pid.empty());
  EXPECT_EQ(status.ns_pid.back(), child.pid());
  EXPECT_EQ(status.threads, 1);
  EXPECT_TRUE(status.sig_blocked & (1ull << (SIGUSR1 - 1)));
  EXPECT_TRUE(status.sig_ignored & (1ull << (SIGUSR2 - 1)));
  EXPECT_TRUE(status.shared_pending & (1ull << (SIGUSR1 - 1)));
  EXPECT_GE(status.sig_queued, 1u);
  EXPECT_GT(status.sig_queue_limit, 0u);
  EXPECT_NE(status.cap_bnd, 0u);
  EXPECT_TRUE(status.umask.has_value());
  EXPECT_EQ(status.fields.at("Name"), "proc test kid");

  EXPECT_EQ(list_tasks(child.pid()), std::vector<pid_t>{child.pid()});
  auto children = list_children(getpid(), static_cast<pid_t>(syscall(SYS_gettid)));
  EXPECT_NE(std::find(children.begin(), children.end(), child.pid()), children.end());
}

TEST(Proc, TasksOfSelfWithThread) {
  std::atomic<bool> stop{false};
  std::atomic<pid_t> tid{0};
  std::thread t([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    while (!stop) std::this_thread::sleep_for(1ms);
  });
  while (tid == 0) std::this_thread::sleep_for(1ms);
  auto tasks = list_tasks(getpid());
  stop = true;
  t.join();
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0], getpid());
  EXPECT_EQ(tasks[1], tid.load());
}

TEST(Proc, FdsFdinfoAndLinks) {
  test::TempDir dir("proc-test");
  std::string path = (dir.path() / "file").string();
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "0123456789", 10), 10);
  auto fds = list_fds(getpid());
  EXPECT_NE(std::find(fds.begin(), fds.end(), fd), fds.end());
  EXPECT_EQ(read_fd_link(getpid(), fd), path);
  FdInfo info = read_fdinfo(getpid(), fd);
  EXPECT_EQ(info.pos, 10u);
  EXPECT_EQ(info.flags & O_ACCMODE, static_cast<uint32_t>(O_RDWR));
  EXPECT_TRUE(info.flags & O_APPEND);
  EXPECT_TRUE(info.flags & O_CLOEXEC);
  EXPECT_GE(info.mnt_id, 0);
  struct stat st{};
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(info.ino, st.st_ino);
  close(fd);

  int p[2];
  ASSERT_EQ(pipe(p), 0);
  EXPECT_EQ(read_fd_link(getpid(), p[0]).rfind("pipe:[", 0), 0u);
  close(p[0]);
  close(p[1]);

  auto parsed = parse_fdinfo("pos:\t5\nflags:\t0100002\nmnt_id:\t30\nino:\t77\neventfd-count:  3\n", "t");
  EXPECT_EQ(parsed.pos, 5u);
  EXPECT_EQ(parsed.flags, 0100002u);
  EXPECT_EQ(parsed.mnt_id, 30);
  EXPECT_EQ(parsed.ino, 77u);
  ASSERT_EQ(parsed.extra.size(), 1u);
  EXPECT_EQ(parsed.extra[0].first, "eventfd-count");
  EXPECT_EQ(parsed.extra[0].second, "3");
}

TEST(Proc, Namespaces) {
  auto ns = read_namespaces(getpid());
  for (const char* name : {"pid", "net", "mnt", "uts", "ipc", "user", "cgroup"}) {
    ASSERT_TRUE(ns.count(name)) << name;
    EXPECT_NE(ns[name], 0u);
  }
  struct stat st{};
  ASSERT_EQ(stat("/proc/self/ns/net", &st), 0);
  EXPECT_EQ(ns["net"], st.st_ino);
  Child child([] {
    for (;;) pause();
  });
  EXPECT_EQ(read_namespaces(child.pid()), ns);
}

}  // namespace
}  // namespace stasis::proc
