// The one JSON helper the hand-built outputs need (`check --json`, `show`'s framing);
// protobuf's printer does the messages themselves.
#pragma once

#include <string>
#include <string_view>

namespace stasis {

// s as a quoted JSON string, with quotes, backslashes and control characters escaped.
std::string json_string(std::string_view s);

}  // namespace stasis
