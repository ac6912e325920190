// An open fd passed over a unix socket (SCM_RIGHTS) with the bytes of one message.
#pragma once

#include <span>
#include <string_view>

#include "common/fd.h"

namespace stasis {

// Sends bytes (at least one: a datagram of none carries no fd), with fd when fd >= 0.
// Throws Error naming `what` and errno.
void send_with_fd(int socket, std::span<const char> bytes, int fd, std::string_view what);

// Receives one message into buffer (flags as recvmsg's, MSG_CMSG_CLOEXEC added) and the fd
// that came with it; *got: the bytes received. The fd is invalid when none came. Throws Error
// naming `what` and errno.
UniqueFd receive_with_fd(int socket, std::span<char> buffer, int flags, size_t* got, std::string_view what);

}  // namespace stasis
