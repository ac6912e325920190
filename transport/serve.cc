#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "common/error.h"
#include "common/fault.h"
#include "common/log.h"
#include "transport/migrate.h"
#include "transport/wire.h"

namespace stasis::transport {

namespace fs = std::filesystem;

namespace {

// `stasis --root ROOT restore -D DIR --name NAME -d` as a child: a restore changes process-wide
// state (signal handlers, ptrace) that a server with several connections must not share.
std::string restore_in_child(const ServeOptions& opt, const fs::path& dir, const std::string& name) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return "pipe: " + describe_errno(errno);
  const std::string exe = "/proc/self/exe", root = opt.state_root.string(), d = dir.string();
  pid_t pid = ::fork();
  if (pid < 0) return "fork: " + describe_errno(errno);
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // serve blocks SIGTERM for its signal thread
    ::dup2(p[1], 1);
    ::dup2(p[1], 2);
    int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, 0);
    ::syscall(SYS_close_range, 3, ~0U, 0);  // not the connections' sockets
    ::execl(exe.c_str(), "stasis", "--root", root.c_str(), "restore", "-D", d.c_str(), "--name", name.c_str(), "-d",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(p[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR);)
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "ok";
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out.empty() ? "restore failed" : out;
}

// Removes every folder staged by a serve on this state root (one serve per state root).
void remove_staged(const fs::path& state_root, bool say) {
  std::error_code ec_list;
  for (fs::directory_iterator it(state_root / "incoming", ec_list), end; !ec_list && it != end;
       it.increment(ec_list)) {
    if (it->path().filename().string().rfind("migration-", 0) != 0) continue;
    std::error_code ec;
    fs::remove_all(it->path(), ec);
    if (say) log::info("serve: removed {}, left by an earlier serve", it->path().string());
  }
}

void handle(const ServeOptions& opt, tcp::socket socket) {
  std::string peer;
  set_liveness(socket, 12);
  Channel channel(std::move(socket));
  try {
    peer = channel.socket().remote_endpoint().address().to_string();
  } catch (...) {
  }
  const fs::path incoming = opt.state_root / "incoming";
  fs::create_directories(incoming);
  std::string tmpl = (incoming / "migration-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) {
    log::error("serve: create a staging folder in {}: {}", incoming.string(), describe_errno(errno));
    return;
  }
  const fs::path staging = tmpl;
  try {
    if (opt.tls) channel.start_tls(*opt.tls, /*server=*/true);
    channel.open_server(opt.key);
    for (;;) {
      Frame f = channel.read_frame();
      if (f.kind == FrameKind::File) {
        if (!safe_relative_name(f.text)) fail("a file named '{}' in the stream", f.text);
        // Tests: hold here, in the final phase, for the test to kill this serve.
        if (f.text.rfind("final/", 0) == 0) fault_pause("serve-final");
        channel.receive_file(f, staging / f.text);
        continue;
      }
      if (f.kind != FrameKind::Restore) fail("unexpected frame of kind {}", static_cast<int>(f.kind));
      const size_t nl = f.text.find('\n');
      const std::string dir = f.text.substr(0, nl), name = nl == std::string::npos ? "" : f.text.substr(nl + 1);
      if (!safe_relative_name(dir) || name.empty()) fail("a bad restore request '{}'", f.text);
      // Tests: a destination that dies once the restore was asked for (the source must not
      // run the job then, since this side may).
      channel.send_frame(FrameKind::Ready, "");
      if (Frame go = channel.read_frame(); go.kind != FrameKind::Go)
        fail("expected GO after READY, got a frame of kind {}", static_cast<int>(go.kind));
      if (fault_active("serve-exit-before-restore")) ::_exit(1);
      const std::string result = restore_in_child(opt, staging / dir, name);
      log::info("serve: {} from {}: {}", name, peer, result == "ok" ? "restored, running" : result);
      channel.send_frame(FrameKind::Result, result);
      break;
    }
  } catch (const std::exception& e) {
    log::warn("serve: migration from {} abandoned: {}", peer, e.what());
  }
  std::error_code ec;
  fs::remove_all(staging, ec);
}

}  // namespace

int serve(const ServeOptions& opt) {
  const tcp::endpoint at = parse_endpoint(opt.listen, "--listen");
  if (opt.tls) make_tls_context(*opt.tls, /*server=*/true);  // a bad file now, not at each client
  // What a serve killed in the middle of a migration left (one serve per state root).
  remove_staged(opt.state_root, true);
  ::signal(SIGPIPE, SIG_IGN);
  // Stopped by SIGTERM or SIGINT: the migrations in progress are dropped with what they
  // staged (their sources, seeing the connection close before GO, run on), then exit.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  ::pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  std::thread([stop, root = opt.state_root] {
    int sig = 0;
    ::sigwait(&stop, &sig);
    remove_staged(root, false);
    log::info("serve: stopped by signal {}", sig);
    ::_exit(128 + sig);
  }).detach();
  boost::asio::io_context io;
  tcp::acceptor acceptor(io);
  acceptor.open(at.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  boost::system::error_code ec;
  acceptor.bind(at, ec);
  if (ec) fail("listen on {}: {}", opt.listen, ec.message());
  acceptor.listen();
  const auto bound = acceptor.local_endpoint();
  std::printf("listening on %s:%u\n", bound.address().to_string().c_str(), bound.port());
  std::fflush(stdout);
  for (;;) {
    tcp::socket socket(io);
    acceptor.accept(socket, ec);
    if (ec) {
      log::warn("serve: accept: {}", ec.message());
      continue;
    }
    std::thread([&opt, s = std::move(socket)]() mutable { handle(opt, std::move(s)); }).detach();
  }
}

}  // namespace stasis::transport
