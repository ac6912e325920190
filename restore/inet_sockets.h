// TCP, UDP and netlink sockets made again from inet-sockets.img and netlink-sockets.img, in
// the stub (in the restored job's network namespace) as the fd table is installed: options,
// address, listen backlog, connected peer, queued datagrams (a connecting TCP socket is only
// bound: resume_connection_attempts connects it); established TCP connections
// through TCP_REPAIR, with their sequence numbers, queues, window and options. They stay in
// repair mode until every fd is in place (both ends of a connection inside the job may be
// among them), then finish_inet_sockets takes them out and sends what was never sent.
#pragma once

#include <sys/types.h>

#include <map>
#include <vector>

#include "common/fd.h"
#include "files.pb.h"
#include "inet_socket.pb.h"
#include "restore/file_images.h"
#include "restore/tree.h"

namespace stasis::restore {

UniqueFd open_inet_socket(const pb::InetSocket& socket);
UniqueFd open_netlink_socket(const pb::NetlinkSocket& socket);

// After the whole fd table is installed: established connections out of repair mode, with
// the bytes the program had written but TCP had not sent yet queued again.
void finish_inet_sockets(const std::vector<pb::FdEntry>& fds, const FileImages& images);

// The restorer, once the namespace has its contents (routes) back and before the job runs:
// the TCP sockets that were connecting at the dump (SYN_SENT, bound by the stub) connect
// again, a new SYN as after a lost one; a program waiting for the connection goes on waiting.
void resume_connection_attempts(const RestoreTree& tree, const std::map<pid_t, pid_t>& host_pids);

// The restorer, once the namespace's contents are back and before the job runs: fails when
// an address a socket is bound to is not in the job's network namespace (the stub bound it
// with IP_FREEBIND meanwhile, as addresses of the job's own come back after its fds).
void check_bound_addresses(const FileImages& images, pid_t pid);

// The monitor, before the restored container's links come up: the network lock of the
// dump, the same table for the same connections, in the new namespace of PID 1 (pid), so
// that no packet of a peer meets it before the connections are back. Nothing without
// established connections.
void lock_network(const FileImages& images, pid_t pid);

// The restorer, once the job runs: removes the network lock from the namespace of the job's
// process pid (the dump's own when the job was dumped in the host's namespace, else the one
// lock_network made).
void remove_network_lock(const FileImages& images, pid_t pid);

}  // namespace stasis::restore
