// Pipes whose other end is outside the dumped job, as in a shell pipeline
// (`producer | job | consumer`), dumped with `stasis dump --pid`: restore gives the job's
// ends pipes whose other end is gone (reads drain the saved bytes, then end of file; writes
// get EPIPE), or, with --inherit-fd, connects them to a file or an fd of `stasis restore`.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/support/checkpoint_harness.h"

namespace stasis::test {
namespace {

namespace fs = std::filesystem;

std::string pattern(size_t from, size_t count) {
  std::string out;
  for (size_t k = from; k < from + count; ++k) out += static_cast<char>('a' + k % 26);
  return out;
}

// STATUS.pipes of the outside_pipes workload.
struct PipeReport {
  unsigned long long read = 0, written = 0;
  int eof = -1, epipe = -1;
};
PipeReport read_report(const fs::path& status) {
  PipeReport r;
  std::ifstream in(status.string() + ".pipes");
  std::string w1, w2, w3, w4;
  in >> w1 >> r.read >> w2 >> r.eof >> w3 >> r.written >> w4 >> r.epipe;
  return r;
}

// The outside_pipes workload with its stdin and stdout on pipes whose other ends the test
// holds, in a session of its own, as a shell pipeline would start it.
class Pipeline {
 public:
  ~Pipeline() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st;
      ::waitpid(pid_, &st, 0);
    }
    close_ends();
  }
  ::testing::AssertionResult start(const fs::path& status) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) < 0 || ::pipe2(out, O_CLOEXEC) < 0)
      return ::testing::AssertionFailure() << "pipe2: " << strerror(errno);
    to_job_ = in[1];
    from_job_ = out[0];
    struct stat st {};
    ::fstat(in[0], &st);
    stdin_pipe_ = st.st_ino;
    ::fstat(out[1], &st);
    stdout_pipe_ = st.st_ino;
    std::vector<std::string> argv = c_workload("outside_pipes").argv(status);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    const std::string log = status.string() + ".log";
    pid_ = ::fork();
    if (pid_ < 0) return ::testing::AssertionFailure() << "fork: " << strerror(errno);
    if (pid_ == 0) {
      ::setsid();
      int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(log_fd, 2);
      ::close_range(3, ~0U, 0);
      ::execv(cargv[0], cargv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    return wait_for_progress(status, 0, 20s);
  }
  void send(const std::string& data) { ASSERT_EQ(::write(to_job_, data.data(), data.size()), ssize_t(data.size())); }
  // The job is gone (killed by the dump): so go the outside ends.
  void close_ends() {
    if (to_job_ >= 0) ::close(to_job_);
    if (from_job_ >= 0) ::close(from_job_);
    to_job_ = from_job_ = -1;
  }
  bool wait_exit() {
    return wait_until([&] { return ::waitpid(pid_, nullptr, WNOHANG) == pid_ && (pid_ = -1); }, 20s);
  }
  pid_t pid() const { return pid_; }
  ino_t stdin_pipe() const { return stdin_pipe_; }
  ino_t stdout_pipe() const { return stdout_pipe_; }

 private:
  pid_t pid_ = -1;
  int to_job_ = -1, from_job_ = -1;
  ino_t stdin_pipe_ = 0, stdout_pipe_ = 0;
};

constexpr size_t kSent = 2000;  // the job reads 8 bytes per 10 ms: most are still queued at the dump

// Dumped with bytes queued in its stdin; restored with both other ends gone: it reads every
// byte sent (the queued ones from the image), then end of file; its writes get EPIPE.
TEST(CheckpointPipes, OtherEndsOutsideAreGoneAfterRestore) {
  CheckpointEnv env;
  const fs::path status = env.status_path("pipeline");
  Pipeline job;
  ASSERT_TRUE(job.start(status));
  job.send(pattern(0, kSent));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(status, 5, 10s, &n));
  fs::path images = env.image_dir("pipeline");
  ASSERT_TRUE(env.dump_pid(job.pid(), images));
  ASSERT_TRUE(job.wait_exit()) << "dump --pid without --leave-running must stop the process";
  const PipeReport before = read_report(status);
  ASSERT_LT(before.read, kSent) << "nothing was queued in the pipe at the dump";
  job.close_ends();
  n = std::max(n, read_status(status).progress);

  Container restored(env, "pipeline");
  ASSERT_TRUE(restored.restore(images, status));
  EXPECT_NE(restored.last_output().find(fmt::format("pipe:[{}]: its write end was outside the job and is closed now",
                                                    job.stdin_pipe())),
            std::string::npos)
      << restored.last_output();
  ASSERT_TRUE(wait_for_progress(status, n, 30s, &n, n));
  PipeReport after;
  EXPECT_TRUE(wait_until([&] { return (after = read_report(status)).eof == 1 && after.epipe == 1; }, 40s))
      << "read " << after.read << " eof " << after.eof << " epipe " << after.epipe;
  EXPECT_EQ(after.read, kSent) << "bytes queued in the pipe at the dump were lost or repeated";
  EXPECT_EQ(after.written, before.written) << "a write succeeded with the reader gone";
  EXPECT_TRUE(keep_progressing(status, 500ms));
}

// --inherit-fd: the job's stdin reads a file given at restore, its stdout writes into an fd
// of `stasis restore` (a pipe the test reads).
TEST(CheckpointPipes, InheritFdConnectsTheEndsToAFileAndAnFd) {
  CheckpointEnv env;
  const fs::path status = env.status_path("pipeline");
  Pipeline job;
  ASSERT_TRUE(job.start(status));
  job.send(pattern(0, kSent));
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(status, 5, 10s, &n));
  fs::path images = env.image_dir("pipeline");
  ASSERT_TRUE(env.dump_pid(job.pid(), images));
  ASSERT_TRUE(job.wait_exit());
  const PipeReport before = read_report(status);
  job.close_ends();
  n = std::max(n, read_status(status).progress);

  // What the job reads next: the pattern from where it stopped.
  const fs::path more = env.work() / "more.in";
  {
    std::ofstream out(more);
    out << pattern(before.read, 500);
  }
  int out[2];
  ASSERT_EQ(::pipe(out), 0);  // inherited by `stasis restore` (no close-on-exec)
  Container restored(env, "pipeline");
  auto r = restored.restore(images, status,
                            {"--inherit-fd", fmt::format("{}:pipe:[{}]", more.string(), job.stdin_pipe()),
                             "--inherit-fd", fmt::format("fd[{}]:pipe:[{}]", out[1], job.stdout_pipe())});
  ::close(out[1]);
  ASSERT_TRUE(r) << r.message();
  EXPECT_NE(restored.last_output().find("bytes waiting in pipe:[" + std::to_string(job.stdin_pipe()) +
                                        "] at dump time are not delivered"),
            std::string::npos)
      << restored.last_output();
  ASSERT_TRUE(wait_for_progress(status, n, 30s, &n, n));
  PipeReport after;
  EXPECT_TRUE(wait_until([&] { return (after = read_report(status)).eof == 1; }, 20s)) << "read " << after.read;
  EXPECT_EQ(after.read, before.read + 500) << "the job did not read the file given with --inherit-fd";
  // Its writes come to us.
  ::fcntl(out[0], F_SETFL, O_NONBLOCK);
  std::string got;
  EXPECT_TRUE(wait_until(
      [&] {
        char buf[64];
        ssize_t k = ::read(out[0], buf, sizeof buf);
        if (k > 0) got.append(buf, static_cast<size_t>(k));
        return got.size() >= 5;
      },
      10s))
      << "nothing came through the fd given with --inherit-fd";
  EXPECT_EQ(got.find_first_not_of('o'), std::string::npos) << got;
  EXPECT_EQ(read_report(status).epipe, 0);
  // We close it: the job's writes fail with EPIPE, as with any reader gone.
  ::close(out[0]);
  EXPECT_TRUE(wait_until([&] { return read_report(status).epipe == 1; }, 10s));
  EXPECT_TRUE(keep_progressing(status, 500ms));
}

// A --inherit-fd that names no pipe to outside is a usage error listing those there are.
TEST(CheckpointPipes, InheritFdOfAnUnknownPipeIsRefused) {
  CheckpointEnv env;
  const fs::path status = env.status_path("pipeline");
  Pipeline job;
  ASSERT_TRUE(job.start(status));
  fs::path images = env.image_dir("pipeline");
  ASSERT_TRUE(env.dump_pid(job.pid(), images, {"--leave-running"}));
  Container restored(env, "pipeline");
  auto r = restored.restore(images, status, {"--inherit-fd", "fd[0]:pipe:[1]"});
  ASSERT_FALSE(r);
  const std::string message = r.message();
  EXPECT_NE(message.find("pipe:[1] is not a pipe of the job whose other end was outside it"), std::string::npos)
      << message;
  EXPECT_NE(message.find(fmt::format("pipe:[{}] (the job's read end)", job.stdin_pipe())), std::string::npos)
      << message;
  EXPECT_FALSE(restored.host_pid().has_value()) << "a refused restore must leave nothing running";
}

// A real program at the end of a shell pipeline: `sleep 1000 | python3 py_counter.py`.
TEST(CheckpointPipes, PythonReadingFromSleepComesBack) {
  CheckpointEnv env;
  const fs::path status = env.status_path("py");
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Workload w = python_workload();
  std::vector<std::string> argv = w.argv(status);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const std::string log = status.string() + ".log";
  pid_t sleeper = ::fork();
  ASSERT_GE(sleeper, 0);
  if (sleeper == 0) {
    ::setsid();
    ::dup2(p[1], 1);
    ::execl("/bin/sleep", "sleep", "1000", nullptr);
    ::_exit(127);
  }
  pid_t python = ::fork();
  if (python == 0) {
    ::setsid();
    int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(p[0], 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::close_range(3, ~0U, 0);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  ::close(p[0]);
  ::close(p[1]);
  struct Reap {
    pid_t pids[2];
    ~Reap() {
      for (pid_t pid : pids)
        if (pid > 0) {
          ::kill(pid, SIGKILL);
          ::waitpid(pid, nullptr, 0);
        }
    }
  } reap{{sleeper, python}};
  ASSERT_GT(python, 0);
  std::uint64_t n = 0;
  ASSERT_TRUE(wait_for_progress(status, 0, 30s, &n));
  fs::path images = env.image_dir("py");
  ASSERT_TRUE(env.dump_pid(python, images));
  ASSERT_EQ(::waitpid(python, nullptr, 0), python);
  reap.pids[1] = -1;
  n = std::max(n, read_status(status).progress);
  Container restored(env, "py");
  ASSERT_TRUE(restored.restore(images, status));
  ASSERT_TRUE(wait_for_progress(status, n, 30s, &n, n));
  EXPECT_TRUE(keep_progressing(status, 2000ms));
}

// `producer | cat > out`: cat, restored with its stdin connected to a pipe of `stasis restore`
// (--inherit-fd fd[N]), reads what comes there, appends it after what it wrote before the
// dump, and exits 0 at end of file.
TEST(CheckpointPipes, CatReadsFromAnInheritedFdAndEnds) {
  CheckpointEnv env;
  const fs::path out = env.work() / "out.txt";
  int in[2];
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  struct stat st {};
  ASSERT_EQ(::fstat(in[0], &st), 0);
  const ino_t pipe_ino = st.st_ino;
  pid_t cat = ::fork();
  ASSERT_GE(cat, 0);
  if (cat == 0) {
    ::setsid();
    int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int null_fd = ::open("/dev/null", O_WRONLY);
    ::dup2(in[0], 0);
    ::dup2(out_fd, 1);
    ::dup2(null_fd, 2);
    ::close_range(3, ~0U, 0);
    ::execl("/bin/cat", "cat", nullptr);
    ::_exit(127);
  }
  struct Reap {
    pid_t pid;
    ~Reap() {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  } reap{cat};
  ::close(in[0]);
  ASSERT_EQ(::write(in[1], "hello\n", 6), 6);
  ASSERT_TRUE(wait_until([&] { return read_text(out) == "hello\n"; }, 10s)) << read_text(out);
  fs::path images = env.image_dir("cat");
  ASSERT_TRUE(env.dump_pid(cat, images));
  ASSERT_EQ(::waitpid(cat, nullptr, 0), cat);
  reap.pid = -1;
  ::close(in[1]);

  int next[2];
  ASSERT_EQ(::pipe(next), 0);  // its read end goes to `stasis restore` (no close-on-exec)
  Container restored(env, "cat");
  auto r = restored.restore(images, env.status_path("cat"),
                            {"--inherit-fd", fmt::format("fd[{}]:pipe:[{}]", next[0], pipe_ino)});
  ::close(next[0]);
  ASSERT_TRUE(r) << r.message();
  ASSERT_EQ(::write(next[1], "world\n", 6), 6);
  ::close(next[1]);
  EXPECT_TRUE(wait_until([&] { return read_text(out) == "hello\nworld\n"; }, 10s)) << read_text(out);
  EXPECT_TRUE(restored.wait_gone()) << "cat did not end at the end of its new stdin";
}

}  // namespace
}  // namespace stasis::test
