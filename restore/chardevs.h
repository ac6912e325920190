// Reopening character devices (/dev/null, /dev/zero, /dev/urandom, a tty...).
#pragma once

#include "chardev.pb.h"
#include "common/fd.h"

namespace stasis::restore {

UniqueFd open_chardev(const pb::CharDev& dev);

}  // namespace stasis::restore
