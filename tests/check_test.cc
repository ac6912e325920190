// `stasis check` and the feature probes behind it, on this machine's real kernel.
#include "common/features.h"

#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/support/test_util.h"

namespace stasis::features {
namespace {

using namespace std::chrono_literals;

// No probe may leave its temporary cgroup behind.
void expect_no_leftover_cgroups() {
  for (const char* root : {"/sys/fs/cgroup/freezer", "/sys/fs/cgroup/unified"}) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(root, ec))
      EXPECT_NE(entry.path().filename().string().rfind("stasis-check-", 0), 0u) << entry.path();
  }
}

TEST(Check, CommandExitsZeroAndListsEveryFeature) {
  auto result = test::run_stasis({"check"}, 60s);
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  for (const std::string& name : feature_names()) {
    EXPECT_NE(result.out.find(" " + name + " "), std::string::npos) << name << "\n" << result.out;
  }
  EXPECT_NE(result.out.find("0 required missing"), std::string::npos) << result.out;
  // Soft-dirty (built into some kernels, not others) is reported, as optional.
  EXPECT_NE(result.out.find("optional  soft-dirty"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("[vdso]"), std::string::npos) << result.out;
  expect_no_leftover_cgroups();
}

TEST(Check, JsonOutput) {
  auto result = test::run_stasis({"check", "--json"}, 60s);
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  const std::string& out = result.out;
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.rfind("{\"ok\":true,\"features\":[", 0), 0u) << out;
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(out[out.size() - 2], '}');
  for (const std::string& name : feature_names())
    EXPECT_NE(out.find("{\"name\":\"" + name + "\",\"ok\":"), std::string::npos) << name;
  EXPECT_NE(out.find("\"name\":\"clone3-set-tid\",\"ok\":true,\"required\":true"), std::string::npos) << out;
  EXPECT_NE(out.find("\"name\":\"soft-dirty\",\"ok\":"), std::string::npos) << out;
  // Balanced braces and brackets, no raw newline inside: a cheap well-formedness check.
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i + 1 < out.size(); ++i) {
    char c = out[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
    EXPECT_GE(depth, 0);
    EXPECT_NE(c, '\n');
  }
  EXPECT_EQ(depth, 0);
  EXPECT_FALSE(in_string);
}

TEST(Check, LibraryApi) {
  auto start = std::chrono::steady_clock::now();
  std::vector<FeatureResult> results = probe_features();
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, 30s);
  ASSERT_EQ(results.size(), feature_names().size());
  EXPECT_TRUE(all_required_ok(results));
  for (const FeatureResult& r : results) {
    EXPECT_FALSE(r.purpose.empty()) << r.name;
    if (r.required) {
      EXPECT_TRUE(r.ok) << r.name << ": " << r.detail;
    }
    if (!r.ok) {
      EXPECT_FALSE(r.detail.empty()) << r.name << " is missing without a reason";
    }
  }
  EXPECT_NO_THROW(require_features("test", {"ptrace", "clone3-set-tid"}));
  // require_features names what is missing: any optional feature this kernel lacks will do
  // (soft-dirty on most kernels with PAGEMAP_SCAN, PAGEMAP_SCAN on older ones).
  for (const FeatureResult& r : results) {
    if (r.ok) {
      EXPECT_NO_THROW(require_features("test", {r.name})) << r.name;
      continue;
    }
    try {
      require_features("test", {r.name});
      ADD_FAILURE() << r.name << " is missing, yet require_features passed";
    } catch (const UnsupportedError& e) {
      EXPECT_NE(std::string(e.what()).find("test needs " + r.name), std::string::npos) << e.what();
      EXPECT_EQ(e.exit_code(), kExitUnsupported);
    }
  }
  EXPECT_THROW(probe_feature("no-such-feature"), Error);
  // All required ok must flip when a required one is missing.
  results[0].ok = false;
  EXPECT_FALSE(all_required_ok(results));
  expect_no_leftover_cgroups();
}

}  // namespace
}  // namespace stasis::features
