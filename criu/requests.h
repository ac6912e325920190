// What `stasis swrk` answers to each request type (docs/criu.md): VERSION, FEATURE_CHECK and
// CHECK at once; DUMP through dump::dump(), with the notifications runc waits for; any other
// type, and any option we do not honour, with a failed criu_resp whose cr_errmsg says what.
#pragma once

#include "criu/channel.h"
#include "criu_rpc.pb.h"

namespace stasis::criu {

// The CRIU release whose protocol we speak (docs/criu.md, "Version"): clients decide from it
// which options to send.
inline constexpr int kCriuMajor = 3;
inline constexpr int kCriuMinor = 16;

// The response to req; a DUMP also sends its notifications over channel on the way.
criu_resp handle_request(const criu_req& req, Channel& channel);

// A failed response of this type saying why (cr_errmsg cut to what every client reads).
criu_resp failure(criu_req_type type, std::string_view why, int cr_errno = 0);

}  // namespace stasis::criu
