// Kernel feature probes: does this kernel (and do our privileges) give us what checkpoint
// and restore stand on? Each probe really uses the interface, in a forked child where it
// changes state, bounded in time, and cleans up. `stasis check` prints them; dump and
// restore call require_features() to refuse clearly up front.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace stasis::features {

struct FeatureResult {
  std::string name;     // stable identifier: "ns-pid", "clone3-set-tid", "pagemap-scan", ...
  bool ok = false;
  bool required = false;
  std::string purpose;  // what stasis needs it for
  std::string detail;   // why it is missing, or what was found (e.g. the vDSO layout)
  double millis = 0;    // how long the probe took
};

// Every probe, in a fixed order.
std::vector<FeatureResult> probe_features();
// The names probe_features() reports, in its order.
std::vector<std::string> feature_names();
// One probe by name; throws Error for an unknown name.
FeatureResult probe_feature(std::string_view name);
// Probes the named features and throws UnsupportedError ("WHO needs NAME (PURPOSE): DETAIL")
// naming every one that is missing.
void require_features(std::string_view who, std::initializer_list<std::string_view> names);

// True when every required feature is ok.
bool all_required_ok(const std::vector<FeatureResult>& results);
// "ok       required  ns-pid              PID namespaces: ...": one line, no newline.
std::string format_line(const FeatureResult& result);
// {"ok":true,"features":[{"name":...,"ok":...,"required":...,"purpose":...,"detail":...,"ms":...}]}
std::string to_json(const std::vector<FeatureResult>& results);

}  // namespace stasis::features
