// The command line itself: usage errors exit 2 with help, --version, not-implemented commands.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/support/test_util.h"

using stasis::test::read_text;
using stasis::test::run_command;
using stasis::test::run_stasis;
using stasis::test::TempDir;

TEST(Cli, VersionPrintsVersion) {
  auto r = run_stasis({"--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("0.1.0"), std::string::npos) << r.out;
  // And the commit it was built from (or "unknown" outside a git checkout).
  EXPECT_NE(r.out.find("(commit "), std::string::npos) << r.out;
}

TEST(Cli, NoCommandIsUsageErrorWithHelp) {
  auto r = run_stasis({});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE((r.out + r.err).find("Usage"), std::string::npos) << r.out << r.err;
}

TEST(Cli, UnknownCommandIsUsageError) {
  auto r = run_stasis({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "stasis: unknown command 'frobnicate' (see 'stasis --help' for the list)\n");
  EXPECT_EQ(r.out, "");
  // Also after global options.
  r = run_stasis({"--root", "/tmp", "bogus", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command 'bogus'"), std::string::npos) << r.err;
}

TEST(Cli, DumpAndRestoreNameTheCheckpointFolderAlike) {
  // Each accepts -D, --dir and --images-dir: a missing folder is then a failure (1), not a
  // usage error (2).
  for (const char* option : {"-D", "--dir", "--images-dir"}) {
    auto r = run_stasis({"restore", option, "/no/such/checkpoint"});
    EXPECT_EQ(r.exit_code, 1) << option << ": " << r.err;
    r = run_stasis({"dump", "--pid", "999999999", option, "/no/such/parent/checkpoint"});
    EXPECT_NE(r.exit_code, 2) << option << ": " << r.err;
  }
}

TEST(Cli, UnknownOptionIsUsageError) {
  auto r = run_stasis({"show", "--no-such-option"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE((r.out + r.err).find("Usage"), std::string::npos);
}

TEST(Cli, EveryCommandHasHelp) {
  for (const char* cmd : {"run", "ps", "inspect", "stop", "wait", "exec", "attach", "logs", "kill", "rm", "freeze", "thaw", "dump",
                          "restore", "show", "check", "serve", "migrate"}) {
    auto r = run_stasis({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.err;
    EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd << ": " << r.out;
    // Ends with examples of the command itself.
    size_t examples = r.out.rfind("Examples:\n");
    ASSERT_NE(examples, std::string::npos) << cmd << ": " << r.out;
    std::string shown = std::string("stasis ") + cmd;
    EXPECT_NE(r.out.find(shown, examples), std::string::npos) << cmd << ": " << r.out;
    EXPECT_EQ(r.out.find("issue"), std::string::npos) << cmd << ": " << r.out;
    EXPECT_EQ(r.out.find("later"), std::string::npos) << cmd << ": " << r.out;
  }
  // serve and migrate need a key, or --plaintext said in so many words (a usage error).
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"serve", "--listen", "127.0.0.1:1"}, {"migrate", "web", "--to", "127.0.0.1:1"}}) {
    auto r = run_stasis(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.out << r.err;
    EXPECT_NE(r.err.find("give --key FILE"), std::string::npos) << args[0] << ": " << r.err;
  }
  auto r = run_stasis({"--help"});
  EXPECT_NE(r.out.find("Examples:"), std::string::npos) << r.out;
}

TEST(Cli, InstallPutsManPagesAndBashCompletionInPlace) {
  namespace fs = std::filesystem;
  TempDir prefix;
  fs::path build = fs::path(STASIS_BINARY).parent_path();
  auto r = run_command({"cmake", "--install", build.string(), "--prefix", prefix.path().string()},
                       std::chrono::seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(fs::exists(prefix.path() / "bin" / "stasis"));
  EXPECT_TRUE(fs::exists(prefix.path() / "share" / "bash-completion" / "completions" / "stasis"));
  if (run_command({"sh", "-c", "command -v help2man"}).exit_code != 0) GTEST_SKIP() << "help2man is not installed";
  fs::path man = prefix.path() / "share" / "man" / "man1";
  for (const char* cmd : {"run", "ps", "inspect", "stop", "wait", "exec", "attach", "logs", "kill", "rm", "freeze", "thaw", "dump",
                          "restore", "show", "check", "serve", "migrate"}) {
    std::string page = read_text(man / (std::string("stasis-") + cmd + ".1"));
    EXPECT_NE(page.find(std::string(".SH NAME\nstasis\\-") + cmd + " \\- "), std::string::npos) << cmd << ": " << page;
    EXPECT_NE(page.find(".SH EXAMPLES"), std::string::npos) << cmd;
  }
  EXPECT_NE(read_text(man / "stasis-run.1").find("\\-\\-volume"), std::string::npos);
  std::string top = read_text(man / "stasis.1");
  EXPECT_NE(top.find(".SH \"SEE ALSO\""), std::string::npos) << top;
  EXPECT_NE(top.find("stasis\\-restore"), std::string::npos) << top;
}

TEST(Cli, BashCompletionCompletesCommandsAndOptions) {
  std::string script = std::string("source ") + STASIS_SOURCE_DIR + "/docs/completion/stasis.bash\n" + R"(
c() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _stasis; echo "${COMPREPLY[*]}"; }
c stasis s
c stasis ps -
c stasis run --net ""
c stasis dump --comp
)";
  auto r = run_command({"bash", "-c", script});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "stop show serve\n-a --all -q --quiet --format --json --help\nloopback veth host\n--compression\n");
}
