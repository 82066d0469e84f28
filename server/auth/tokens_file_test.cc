#include "server/auth/tokens_file.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace bursar::server::auth {
namespace {

const std::string kHashA = DigestToHex(Sha256("token-a"));
const std::string kHashB = DigestToHex(Sha256("token-b"));

TEST(TokensFileTest, ParsesEntries) {
  const std::string text = absl::StrCat(
      "# who may call bursard\n"
      "tokens:\n"
      "  - name: gateway-prod\n"
      "    role: gateway\n"
      "    sha256: ",
      kHashA,
      "\n"
      "  - {name: dana@finance, role: finance, sha256: \"",
      kHashB, "\"}\n");
  absl::StatusOr<std::vector<TokenEntry>> entries =
      ParseTokensFile(text, "tokens.yaml");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].name, "gateway-prod");
  EXPECT_EQ((*entries)[0].role, Role::kGateway);
  EXPECT_EQ((*entries)[0].sha256, Sha256("token-a"));
  EXPECT_EQ((*entries)[1].name, "dana@finance");
  EXPECT_EQ((*entries)[1].role, Role::kFinance);
  EXPECT_EQ((*entries)[1].sha256, Sha256("token-b"));
}

TEST(TokensFileTest, EntryLinesParseBack) {
  const std::string text =
      absl::StrCat("tokens:\n", TokensFileEntry("ci", "policy-admin", "tok"));
  absl::StatusOr<std::vector<TokenEntry>> entries =
      ParseTokensFile(text, "t.yaml");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].role, Role::kPolicyAdmin);
  EXPECT_EQ((*entries)[0].sha256, Sha256("tok"));
}

struct BadCase {
  std::string name;
  std::string text;
  // Every one must be in the message.
  std::vector<std::string> expected;
};

TEST(TokensFileTest, EveryBadInputHasAClearError) {
  const std::string entry_a = absl::StrCat(
      "  - name: a\n    role: gateway\n    sha256: ", kHashA, "\n");
  const std::vector<BadCase> cases = {
      {"empty file", "", {"t.yaml: ", "empty", "tokens:"}},
      {"not yaml", "tokens: [\n", {"t.yaml:", "not valid YAML"}},
      {"not a mapping", "- a\n- b\n", {"t.yaml:1:1: ", "mapping", "tokens"}},
      {"unknown top-level key",
       absl::StrCat("tokens:\n", entry_a, "users: []\n"),
       {"t.yaml:5:1: ", "unknown key \"users\""}},
      {"tokens missing", "other: 1\n", {"unknown key \"other\""}},
      {"tokens not a list", "tokens: abc\n", {"t.yaml:1:9: tokens: ", "list"}},
      {"tokens empty", "tokens: []\n", {"tokens: ", "at least one"}},
      {"entry not a mapping",
       "tokens:\n  - gateway\n",
       {"t.yaml:2:5: tokens[0]: ", "mapping with name, role and sha256"}},
      {"unknown entry key",
       absl::StrCat("tokens:\n", entry_a, "    expires: 2027-01-01\n"),
       {"t.yaml:5:5: tokens[0].expires: ", "unknown key"}},
      {"plaintext token",
       "tokens:\n  - name: a\n    role: gateway\n    token: s3cret-value\n",
       {"tokens[0].token: ", "no plaintext tokens", "bursarctl token hash"}},
      {"missing name",
       absl::StrCat("tokens:\n  - role: gateway\n    sha256: ", kHashA, "\n"),
       {"t.yaml:2:5: tokens[0]: ", "missing name"}},
      {"missing role",
       absl::StrCat("tokens:\n  - name: a\n    sha256: ", kHashA, "\n"),
       {"tokens[0]: ", "missing role",
        "gateway, finance, policy-admin, viewer"}},
      {"missing sha256",
       "tokens:\n  - name: a\n    role: viewer\n",
       {"tokens[0]: ", "missing sha256", "64 hex digits"}},
      {"unknown role",
       absl::StrCat(
           "tokens:\n  - name: a\n    role: admin\n    sha256: ", kHashA, "\n"),
       {"t.yaml:3:11: tokens[0].role: ", "\"admin\" is not a role",
        "gateway, finance, policy-admin, viewer"}},
      {"role is a list",
       absl::StrCat("tokens:\n  - name: a\n    role: [gateway, viewer]\n"
                    "    sha256: ",
                    kHashA, "\n"),
       {"tokens[0].role: ", "expected one of"}},
      {"short hash",
       "tokens:\n  - name: a\n    role: viewer\n    sha256: abc\n",
       {"t.yaml:4:13: tokens[0].sha256: ", "64 hex digits"}},
      {"hash with a non-hex digit",
       absl::StrCat("tokens:\n  - name: a\n    role: viewer\n    sha256: ",
                    std::string(63, 'a'), "z\n"),
       {"tokens[0].sha256: ", "64 hex digits"}},
      {"empty name",
       absl::StrCat("tokens:\n  - name: \"\"\n    role: viewer\n    sha256: ",
                    kHashA, "\n"),
       {"tokens[0].name: ", "1 to 128 characters"}},
      {"name with a space",
       absl::StrCat("tokens:\n  - name: dana smith\n    role: viewer\n"
                    "    sha256: ",
                    kHashA, "\n"),
       {"tokens[0].name: ", "letters, digits"}},
      {"field given twice",
       absl::StrCat("tokens:\n  - name: a\n    name: b\n    role: viewer\n"
                    "    sha256: ",
                    kHashA, "\n"),
       {"tokens[0].name: ", "given twice"}},
      {"name given twice",
       absl::StrCat("tokens:\n", entry_a,
                    "  - name: a\n    role: viewer\n    sha256: ", kHashB,
                    "\n"),
       {"t.yaml:5:11: tokens[1].name: ", "\"a\" is given twice"}},
      {"hash given twice",
       absl::StrCat("tokens:\n", entry_a,
                    "  - name: b\n    role: viewer\n    sha256: ", kHashA,
                    "\n"),
       {"t.yaml:7:13: tokens[1].sha256: ", "same token hash"}},
  };
  for (const BadCase& c : cases) {
    absl::StatusOr<std::vector<TokenEntry>> entries =
        ParseTokensFile(c.text, "t.yaml");
    ASSERT_FALSE(entries.ok()) << c.name;
    EXPECT_EQ(entries.status().code(), absl::StatusCode::kInvalidArgument)
        << c.name;
    for (const std::string& part : c.expected) {
      EXPECT_TRUE(absl::StrContains(entries.status().message(), part))
          << c.name << ": \"" << part
          << "\" not in: " << entries.status().message();
    }
    // A message never repeats a hash or a token from the file.
    EXPECT_FALSE(absl::StrContains(entries.status().message(), kHashA))
        << c.name;
    EXPECT_FALSE(absl::StrContains(entries.status().message(), "s3cret"))
        << c.name;
  }
}

TEST(TokensFileTest, OversizedFile) {
  const std::string text(kMaxTokensFileBytes + 1, '#');
  const absl::Status status = ParseTokensFile(text, "t.yaml").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), "at most")) << status;
}

TEST(TokensFileTest, MissingFileNamesThePath) {
  const absl::Status status =
      LoadTokensFile("/nonexistent/bursar-tokens.yaml").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(
      absl::StrContains(status.message(), "/nonexistent/bursar-tokens.yaml"))
      << status;
}

}  // namespace
}  // namespace bursar::server::auth
