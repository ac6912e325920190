#include "criu/swrk.h"

#include <signal.h>

#include "common/log.h"
#include "criu/channel.h"
#include "criu/requests.h"

namespace stasis::criu {

int serve(int fd) {
  Channel channel(fd);
  for (;;) {
    BadRequest bad;
    std::optional<criu_req> req = channel.receive(&bad);
    if (!req) {
      if (bad.why.empty()) return 0;  // the client closed its end
      log::error("swrk: {}", bad.why);
      channel.send(failure(EMPTY, bad.why, EINVAL));
      return 1;
    }
    criu_resp resp = handle_request(*req, channel);
    if (!resp.success()) log::error("swrk: {} failed: {}", criu_req_type_Name(req->type()), resp.cr_errmsg());
    channel.send(resp);
    if (!req->keep_open()) return resp.success() ? 0 : 1;
  }
}

}  // namespace stasis::criu
