// The command line itself: usage errors exit 2 with help, --version, not-implemented commands.
#include <gtest/gtest.h>

#include "tests/support/test_util.h"

using stasis::test::run_stasis;

TEST(Cli, VersionPrintsVersion) {
  auto r = run_stasis({"--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("0.1.0"), std::string::npos) << r.out;
}

TEST(Cli, NoCommandIsUsageErrorWithHelp) {
  auto r = run_stasis({});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE((r.out + r.err).find("Usage"), std::string::npos) << r.out << r.err;
}

TEST(Cli, UnknownCommandIsUsageError) {
  auto r = run_stasis({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
}

TEST(Cli, UnknownOptionIsUsageError) {
  auto r = run_stasis({"show", "--no-such-option"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE((r.out + r.err).find("Usage"), std::string::npos);
}

TEST(Cli, EveryCommandHasHelp) {
  for (const char* cmd : {"run", "ps", "exec", "kill", "rm", "freeze", "thaw", "dump", "restore", "show", "check",
                          "serve", "migrate"}) {
    auto r = run_stasis({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.err;
    EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd << ": " << r.out;
  }
}
