// `stasis swrk FD`: serves CRIU's RPC protocol on FD, one end of a SOCK_SEQPACKET socket pair
// whose other end the client (runc, podman, CRI-O through runc) holds (docs/criu.md).
#pragma once

namespace stasis::criu {

// Answers requests until the client closes its end, or after one request unless it set
// keep_open. Returns the exit status: 0 when the last request succeeded.
int serve(int fd);

}  // namespace stasis::criu
