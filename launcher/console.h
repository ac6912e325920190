// The terminal of a `stasis run -t` job: a pty pair opened by the caller, whose slave becomes
// the job's stdio and controlling terminal and whose master the monitor holds for the job's
// life. The monitor copies what the job writes into the container's log and to every attached
// client, and what clients type (with -i) into the master.
//
// Clients (the foreground `run -t`, `stasis attach`) talk to the monitor over a SOCK_SEQPACKET
// unix socket, ROOT/NAME.attach (the foreground caller gets a socketpair end instead, attached
// before the job runs, so it misses nothing). Each message from a client starts with a type
// byte: 'D' and the bytes typed, 'W' and a struct winsize (its terminal was resized), or 'E'
// (its input ended: the terminal's end-of-file key goes to the job, once). The
// monitor sends the job's output as plain messages and closes the connection once the job has
// ended and its last output has been sent.
#pragma once

#include <sys/ioctl.h>
#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/fd.h"
#include "container.pb.h"

namespace stasis::launcher {

// ROOT/NAME.attach: where the monitor of a -t container listens (and of a -d -i one without
// -t, whose stdin is a pipe the monitor writes what clients type into).
std::filesystem::path attach_socket_path(const std::filesystem::path& root, const std::string& name);
// Whether the monitor of a container so configured listens there.
bool has_attach_socket(const pb::ContainerConfig& config);

// The pty pair of a -t job, opened in the caller. The master's window size is the caller's
// terminal's when its stdin is one (so the job starts at the right size), else 24x80.
struct ConsolePair {
  UniqueFd master, slave;
  std::string slave_path;  // /dev/pts/N
};
ConsolePair open_console_pair();

// A SOCK_SEQPACKET socketpair: [0] for the monitor (its first client), [1] for the caller.
std::pair<UniqueFd, UniqueFd> console_socketpair();

// In PID 1, with the slave on fds 0-2: a session of its own whose controlling terminal it is.
void take_console_as_controlling_terminal();

// The monitor's side, once PID 1 runs.
struct ConsoleRelay {
  int master = -1;                  // -1 without -t
  UniqueFd stdin_pipe;              // -d -i without -t: the write end of the job's stdin
  int log = -1;                     // the container's log, or -1
  UniqueFd first_client;            // the foreground caller's connection, if any
  std::filesystem::path socket_path;
  UniqueFd listener;                // listen_console(socket_path), made before the caller returns
  bool interactive = false;         // -i: clients' input goes to the job
};
// The monitor's listening socket at path (mode 0600); invalid when it cannot be made (the job
// runs and logs all the same, without attach).
UniqueFd listen_console(const std::filesystem::path& path);
// Relays until PID 1 (our child) ends, sends the job's last output, closes the connections
// and removes the socket. Returns PID 1's wait status.
int relay_console(ConsoleRelay relay, pid_t pid1);

// "ctrl-p,ctrl-q" -> {0x10, 0x11}; "" -> none (detaching is then off). Throws UsageError.
std::vector<unsigned char> parse_detach_keys(const std::string& spec);
inline constexpr const char* kDefaultDetachKeys = "ctrl-p,ctrl-q";

// Connects to the monitor of container `name`. Throws Error naming the container when it has
// no terminal or is not running.
UniqueFd connect_console(const std::filesystem::path& root, const std::string& name);

// The client: our stdin (raw while attached, when it is a terminal and send_input) to the
// job, the job's output to our stdout, window size changes passed on. Returns Ended when the
// monitor closed the connection (the job ended), Detached when the user typed detach_keys.
// For a job without -t (follow_log: its log), our terminal stays as it is (the job has no
// terminal to edit lines or echo), what the job writes is followed in its log from now on, and
// SIGINT (ctrl-c) detaches.
enum class AttachEnd { Ended, Detached };
AttachEnd attach_console(int connection, const std::vector<unsigned char>& detach_keys, bool send_input,
                         const std::string& follow_log = "");

}  // namespace stasis::launcher
