#pragma once
#include <string_view>
namespace stasis {
inline constexpr std::string_view kVersion = "0.1.0";
}
