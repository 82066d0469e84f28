#include "policy/loader.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/compiled_policy.h"
#include "policy/money.h"
#include "policy/pricing.h"

namespace bursar::policy {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::SizeIs;
using ::testing::StartsWith;

// Three lines; whatever follows starts on line 4.
constexpr char kHeader[] =
    "apiVersion: bursar.dev/v1\n"
    "kind: Policy\n"
    "metadata: { name: test }\n";

constexpr char kGpt41[] =
    "pricing:\n"
    "  gpt-4.1: { input: \"2.00\", cached_input: \"0.50\", output: \"8.00\" "
    "}\n";

std::vector<std::string> Formatted(const CompileResult& result) {
  std::vector<std::string> out;
  for (const Diagnostic& diagnostic : result.diagnostics) {
    out.push_back(FormatDiagnostic(diagnostic));
  }
  return out;
}

CompileResult CompileOne(const std::string& content,
                         const std::string& path = "p.yaml") {
  return CompilePolicy({SourceFile{path, content}});
}

// The formatted diagnostics of `content` compiled alone; expects it to fail.
std::vector<std::string> Errors(const std::string& content) {
  CompileResult result = CompileOne(content);
  EXPECT_EQ(result.policy, nullptr);
  return Formatted(result);
}

// A diagnostic starting with `prefix` ("file:line:column: field: ") whose
// message mentions `text`.
::testing::Matcher<const std::vector<std::string>&> HasError(
    const std::string& prefix, const std::string& text) {
  return Contains(AllOf(StartsWith(prefix), HasSubstr(text)));
}

TEST(CompilePolicyTest, CompilesPricesAndDefaults) {
  CompileResult result = CompileOne(absl::StrCat(
      kHeader,
      "timezone: America/New_York\n"
      "pricing_as_of: \"2025-06-01\"\n"
      "pricing:\n"
      "  gpt-4.1: { provider: openai, input: \"2.00\", cached_input: "
      "\"0.50\", output: \"8.00\" }\n"
      "  gpt-4o-mini:\n"
      "    input: \"0.15\"\n"
      "    output: \"0.60\"\n"
      "defaults: { max_output_tokens: 512, unknown_model: deny }\n"));
  ASSERT_NE(result.policy, nullptr)
      << ::testing::PrintToString(Formatted(result));
  EXPECT_THAT(result.diagnostics, IsEmpty());
  const CompiledPolicy& policy = *result.policy;
  EXPECT_THAT(policy.version(), MatchesRegex("[0-9a-f]{16}"));
  EXPECT_THAT(policy.prices(), SizeIs(2));

  const ModelPrice* gpt41 = policy.FindPrice("gpt-4.1");
  ASSERT_NE(gpt41, nullptr);
  EXPECT_EQ(gpt41->input_nanos_per_mtok, 2'000'000'000);
  EXPECT_EQ(gpt41->cached_input_nanos_per_mtok, 500'000'000);
  EXPECT_EQ(gpt41->output_nanos_per_mtok, 8'000'000'000);
  EXPECT_EQ(gpt41->provider, "openai");

  // cached_input defaults to input; provider is optional.
  const ModelPrice* mini = policy.FindPrice("gpt-4o-mini");
  ASSERT_NE(mini, nullptr);
  EXPECT_EQ(mini->input_nanos_per_mtok, 150'000'000);
  EXPECT_EQ(mini->cached_input_nanos_per_mtok, 150'000'000);
  EXPECT_EQ(mini->output_nanos_per_mtok, 600'000'000);
  EXPECT_EQ(mini->provider, "");

  EXPECT_EQ(policy.FindPrice("gpt-4"), nullptr);
  EXPECT_EQ(policy.defaults().max_output_tokens, 512);
  EXPECT_EQ(policy.defaults().unknown_model, UnknownModelAction::kDeny);
}

TEST(CompilePolicyTest, DefaultsApplyWhenNotWritten) {
  CompileResult result = CompileOne(absl::StrCat(kHeader, kGpt41));
  ASSERT_NE(result.policy, nullptr);
  EXPECT_EQ(result.policy->defaults().max_output_tokens, 4096);
  EXPECT_EQ(result.policy->defaults().unknown_model,
            UnknownModelAction::kReject);
}

TEST(CompilePolicyTest, UnquotedPricesAreReadFromTheSourceText) {
  // No float parsing: 0.1 and 0.000001 are exact.
  CompileResult result = CompileOne(absl::StrCat(
      kHeader,
      "pricing:\n"
      "  m: { input: 0.1, cached_input: 0.000001, output: 2.00 }\n"));
  ASSERT_NE(result.policy, nullptr)
      << ::testing::PrintToString(Formatted(result));
  const ModelPrice* m = result.policy->FindPrice("m");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->input_nanos_per_mtok, 100'000'000);
  EXPECT_EQ(m->cached_input_nanos_per_mtok, 1'000);
  EXPECT_EQ(m->output_nanos_per_mtok, 2'000'000'000);
}

TEST(CompilePolicyTest, InvalidAmountsPointAtTheValue) {
  std::vector<std::string> errors = Errors(absl::StrCat(
      kHeader,
      "pricing:\n"                                             // line 4
      "  a: { input: \"-1\", output: \"1e3\" }\n"              // line 5
      "  b: { input: \"1,000\", output: \"0.0000000001\" }\n"  // line 6
      "  c: { input: \"\", output: [1] }\n"                    // line 7
      "  d: { input: { usd: 1 }, output: ~ }\n"));             // line 8
  EXPECT_THAT(errors, HasError("p.yaml:5:15: pricing.a.input: ", "has a sign"));
  EXPECT_THAT(errors, HasError("p.yaml:5:29: pricing.a.output: ",
                               "\"1e3\" uses an exponent"));
  EXPECT_THAT(errors, HasError("p.yaml:6:15: pricing.b.input: ",
                               "thousands separator"));
  EXPECT_THAT(errors,
              Contains("p.yaml:6:32: pricing.b.output: expected USD per 1M "
                       "tokens: \"0.0000000001\" has 10 fractional digits; at "
                       "most 9 (nano-USD) are representable"));
  EXPECT_THAT(errors,
              HasError("p.yaml:7:15: pricing.c.input: ", "empty amount"));
  EXPECT_THAT(errors,
              HasError("p.yaml:7:27: pricing.c.output: ", "got a list"));
  EXPECT_THAT(errors,
              HasError("p.yaml:8:15: pricing.d.input: ", "got a mapping"));
  EXPECT_THAT(errors,
              HasError("p.yaml:8:27: pricing.d.output: ", "got nothing"));
  EXPECT_THAT(errors, SizeIs(8));  // every error, not just the first
}

TEST(CompilePolicyTest, MissingAndUnknownFields) {
  std::vector<std::string> errors = Errors(absl::StrCat(
      kHeader,
      "pricing:\n"                                            // line 4
      "  a: { cached_input: \"1\" }\n"                        // line 5
      "  b: { input: \"1\", output: \"1\", ouput: \"2\" }\n"  // line 6
      "budgets: []\n"));                                      // line 7
  EXPECT_THAT(
      errors,
      ElementsAre(
          "p.yaml:5:6: pricing.a.input: missing required field \"input\"",
          "p.yaml:5:6: pricing.a.output: missing required field \"output\"",
          "p.yaml:6:33: pricing.b.ouput: unknown field \"ouput\"; expected one "
          "of: provider, input, cached_input, output",
          "p.yaml:7:1: budgets: unknown field \"budgets\"; expected one of: "
          "apiVersion, kind, metadata, timezone, pricing, pricing_as_of, "
          "defaults, routes, spend_slos, on_exhausted, deny, rate_limits, "
          "concurrency, alerts, alerting, attribution"));
}

TEST(CompilePolicyTest, HeaderErrors) {
  std::vector<std::string> errors =
      Errors(absl::StrCat("apiVersion: bursar.dev/v2\n"         // line 1
                          "kind: Budget\n"                      // line 2
                          "metadata: { name: Test_Policy }\n",  // line 3
                          kGpt41));
  EXPECT_THAT(
      errors,
      ElementsAre(
          "p.yaml:1:13: apiVersion: expected bursar.dev/v1, got "
          "\"bursar.dev/v2\"",
          "p.yaml:2:7: kind: expected Policy (or PolicyTest for a policy "
          "test), "
          "got \"Budget\"",
          "p.yaml:3:19: metadata.name: expected 1 to 63 lowercase letters, "
          "digits or '-', e.g. \"northstar-prod\", got \"Test_Policy\""));

  errors = Errors(kGpt41);
  EXPECT_THAT(
      errors,
      ElementsAre(
          "p.yaml:1:1: apiVersion: missing required field \"apiVersion\"",
          "p.yaml:1:1: kind: missing required field \"kind\"",
          "p.yaml:1:1: metadata: missing required field \"metadata\""));

  errors =
      Errors(absl::StrCat("apiVersion: bursar.dev/v1\nkind: Policy\nmetadata:\n"
                          "  description: no name\n",
                          kGpt41));
  EXPECT_THAT(errors, ElementsAre("p.yaml:4:3: metadata.name: missing "
                                  "required field \"name\""));

  errors = Errors("- just\n- a list\n");
  EXPECT_THAT(errors, ElementsAre(HasSubstr(
                          "p.yaml:1:1: expected a mapping with apiVersion, "
                          "kind and metadata, got a list")));
}

TEST(CompilePolicyTest, DuplicateKeysAreErrors) {
  std::vector<std::string> errors = Errors(absl::StrCat(
      kHeader,
      "pricing:\n"                                            // line 4
      "  m: { input: \"1\", output: \"1\", input: \"2\" }\n"  // line 5
      "  n: { input: \"1\", output: \"1\" }\n"                // line 6
      "  n: { input: \"1\", output: \"1\" }\n"                // line 7
      "kind: Policy\n"));                                     // line 8
  EXPECT_THAT(
      errors,
      ElementsAre(
          "p.yaml:5:33: pricing.m.input: duplicate key \"input\"; it is first "
          "written at p.yaml:5:8",
          "p.yaml:7:3: pricing.n: duplicate key \"n\"; it is first written at "
          "p.yaml:6:3",
          "p.yaml:8:1: kind: duplicate key \"kind\"; it is first written at "
          "p.yaml:2:1"));
}

TEST(CompilePolicyTest, DefaultsErrors) {
  std::vector<std::string> errors =
      Errors(absl::StrCat(kHeader, kGpt41,
                          "defaults:\n"               // line 6
                          "  max_output_tokens: 0\n"  // line 7
                          "  unknown_model: allow\n"  // line 8
                          "  model: gpt-4.1\n"));     // line 9
  EXPECT_THAT(
      errors,
      ElementsAre(
          "p.yaml:7:22: defaults.max_output_tokens: expected a whole number of "
          "tokens from 1 to 100000000, got \"0\"",
          "p.yaml:8:18: defaults.unknown_model: expected reject or deny, got "
          "\"allow\"",
          "p.yaml:9:3: defaults.model: unknown field \"model\"; expected one "
          "of: max_output_tokens, unknown_model"));

  for (const char* bad : {"100000001", "-5", "4096.0", "1e3", "lots",
                          "99999999999999999999999"}) {
    errors = Errors(absl::StrCat(
        kHeader, kGpt41, "defaults: { max_output_tokens: ", bad, " }\n"));
    EXPECT_THAT(errors, ElementsAre(StartsWith(
                            "p.yaml:6:32: defaults.max_output_tokens: expected "
                            "a whole number of tokens from 1 to 100000000")))
        << bad;
  }
  // A quoted number is a string, not a number.
  errors = Errors(absl::StrCat(kHeader, kGpt41,
                               "defaults: { max_output_tokens: \"4096\" }\n"));
  EXPECT_THAT(errors,
              ElementsAre(HasSubstr("the quoted string \"4096\"; "
                                    "write the number without quotes")));
  // The bounds are accepted.
  for (const char* good : {"1", "100000000"}) {
    CompileResult result = CompileOne(absl::StrCat(
        kHeader, kGpt41, "defaults: { max_output_tokens: ", good, " }\n"));
    EXPECT_NE(result.policy, nullptr) << good;
  }
}

TEST(CompilePolicyTest, TimezoneAndDateAreValidated) {
  std::vector<std::string> errors =
      Errors(absl::StrCat(kHeader, kGpt41,
                          "timezone: Mars/Olympus_Mons\n"   // line 6
                          "pricing_as_of: 2025-02-30\n"));  // line 7
  EXPECT_THAT(
      errors,
      ElementsAre(
          "p.yaml:6:11: timezone: expected an IANA time zone name such as "
          "\"America/New_York\" or \"UTC\", got \"Mars/Olympus_Mons\"",
          "p.yaml:7:16: pricing_as_of: expected a date written YYYY-MM-DD, "
          "e.g. "
          "\"2025-06-01\", got \"2025-02-30\""));
  EXPECT_THAT(
      Errors(absl::StrCat(kHeader, kGpt41, "pricing_as_of: 2025-6-1\n")),
      ElementsAre(HasSubstr("got \"2025-6-1\"")));
  CompileResult result = CompileOne(absl::StrCat(
      kHeader, kGpt41, "timezone: UTC\npricing_as_of: 2024-02-29\n"));
  EXPECT_NE(result.policy, nullptr)
      << ::testing::PrintToString(Formatted(result));
}

TEST(CompilePolicyTest, YamlSyntaxErrorHasItsPosition) {
  CompileResult result = CompilePolicy(
      {SourceFile{"bad.yaml", absl::StrCat(kHeader, "pricing: { a: [1 }\n")},
       SourceFile{"good.yaml", absl::StrCat(kHeader, kGpt41)}});
  EXPECT_EQ(result.policy, nullptr);
  EXPECT_THAT(Formatted(result),
              ElementsAre(MatchesRegex("bad\\.yaml:4:[0-9]+: not valid YAML: "
                                       ".+")));
}

// Inputs that used to hang yaml-cpp 0.7's LoadAll (a stray ',' loops,
// allocating, forever), make it recurse without bound, or take ~200x their
// size in memory are refused with a diagnostic (docs/policy-language.md,
// "Limits").
TEST(CompilePolicyTest, InputLimits) {
  EXPECT_THAT(Errors(","),
              ElementsAre("p.yaml:1:1: not valid YAML: unexpected character: "
                          "expected a value, a key or '---'"));
  EXPECT_THAT(Errors(absl::StrCat(kHeader, kGpt41, ",\n")),
              ElementsAre(StartsWith("p.yaml:6:1: not valid YAML: ")));

  // The document's mapping, 62 lists and a mapping: 64 levels.
  const std::string nested =
      std::string(62, '[') + "{a: 1}" + std::string(62, ']');
  EXPECT_THAT(Errors(absl::StrCat(kHeader, kGpt41, "x: ", nested, "\n")),
              ElementsAre(HasSubstr("unknown field \"x\"")));
  EXPECT_THAT(
      Errors(absl::StrCat(kHeader, kGpt41, "x: [", nested, "]\n")),
      ElementsAre("p.yaml:6:67: lists and mappings nest more than 64 levels "
                  "deep here; a policy needs far fewer"));
  EXPECT_THAT(Errors(std::string(100'000, '[')),
              ElementsAre(AllOf(StartsWith("p.yaml:1:"),
                                HasSubstr("nest more than 64 levels"))));

  const std::string big =
      absl::StrCat(kHeader, kGpt41, "# ", std::string(256 * 1024, 'x'), "\n");
  EXPECT_THAT(Errors(big),
              ElementsAre(absl::StrCat(
                  "p.yaml: the file is ", big.size(),
                  " bytes; a policy file may hold at most 256 KiB, so split "
                  "it into several files")));
}

// A time zone name leads LoadTimeZone to a file; only IANA-shaped names get
// there, so a policy cannot make the loader read e.g. /dev/stdin.
TEST(CompilePolicyTest, TimezoneIsAnIanaNameNotAPath) {
  for (const char* zone : {"/dev/stdin", "../../../usr/share/zoneinfo/UTC",
                           "file:/usr/share/zoneinfo/UTC"}) {
    EXPECT_THAT(
        Errors(absl::StrCat(kHeader, kGpt41, "timezone: \"", zone, "\"\n")),
        ElementsAre(HasSubstr("timezone: expected an IANA time zone name")))
        << zone;
  }
  for (const char* zone : {"Etc/GMT+5", "America/Port-au-Prince",
                           "America/Argentina/Buenos_Aires"}) {
    CompileResult result =
        CompileOne(absl::StrCat(kHeader, kGpt41, "timezone: \"", zone, "\"\n"));
    EXPECT_NE(result.policy, nullptr)
        << zone << ::testing::PrintToString(Formatted(result));
  }
}

TEST(CompilePolicyTest, NoPricedModelIsAnError) {
  CompileResult result = CompileOne(kHeader);
  EXPECT_EQ(result.policy, nullptr);
  EXPECT_THAT(Formatted(result),
              ElementsAre(StartsWith("pricing: no model is priced")));
  EXPECT_EQ(CompilePolicy({}).policy, nullptr);
  EXPECT_THAT(Errors(absl::StrCat(kHeader, "pricing: {}\n")),
              ElementsAre(StartsWith("pricing: no model is priced")));
  EXPECT_THAT(Errors(absl::StrCat(kHeader, "pricing:\n")),
              Contains("p.yaml:4:1: pricing: expected a mapping of model name "
                       "to prices, e.g. gpt-4.1: { input: \"2.00\", output: "
                       "\"8.00\" }, got nothing"));
}

TEST(CompilePolicyTest, CachedInputAboveInputIsAWarning) {
  CompileResult result = CompileOne(absl::StrCat(
      kHeader,
      "pricing:\n  m: { input: \"1\", cached_input: \"2\", output: "
      "\"3\" }\n"));
  ASSERT_NE(result.policy, nullptr);
  ASSERT_THAT(result.diagnostics, SizeIs(1));
  EXPECT_EQ(result.diagnostics[0].severity, Diagnostic::Severity::kWarning);
  EXPECT_THAT(FormatDiagnostic(result.diagnostics[0]),
              StartsWith("p.yaml:5:34: warning: pricing.m.cached_input: "
                         "cached input (2.00 USD per 1M tokens) costs more "
                         "than input (1.00)"));
}

TEST(CompilePolicyTest, MergesDocumentsAndFiles) {
  CompileResult result = CompilePolicy({
      SourceFile{"openai.yaml",
                 absl::StrCat(kHeader, kGpt41, "---\n", kHeader,
                              "pricing:\n  o3: { input: \"2\", output: \"8\" "
                              "}\n---\n")},
      SourceFile{"anthropic.yaml",
                 absl::StrCat(kHeader,
                              "pricing:\n  claude-sonnet-4: { input: \"3\", "
                              "cached_input: \"0.30\", output: \"15\" }\n")},
      SourceFile{"defaults.yaml",
                 absl::StrCat(kHeader, "defaults: { unknown_model: deny }\n")},
  });
  ASSERT_NE(result.policy, nullptr)
      << ::testing::PrintToString(Formatted(result));
  EXPECT_THAT(result.diagnostics, IsEmpty());
  EXPECT_THAT(result.policy->prices(), SizeIs(3));
  EXPECT_NE(result.policy->FindPrice("gpt-4.1"), nullptr);
  EXPECT_NE(result.policy->FindPrice("o3"), nullptr);
  ASSERT_NE(result.policy->FindPrice("claude-sonnet-4"), nullptr);
  EXPECT_EQ(
      result.policy->FindPrice("claude-sonnet-4")->cached_input_nanos_per_mtok,
      300'000'000);
  EXPECT_EQ(result.policy->defaults().unknown_model, UnknownModelAction::kDeny);
  EXPECT_EQ(result.policy->defaults().max_output_tokens, 4096);
}

TEST(CompilePolicyTest, ModelPricedTwiceNamesBothPlaces) {
  CompileResult result = CompilePolicy({
      SourceFile{"b.yaml", absl::StrCat(kHeader, kGpt41)},
      SourceFile{"a.yaml", absl::StrCat(kHeader, "\n", kGpt41)},
  });
  EXPECT_EQ(result.policy, nullptr);
  // Files are compiled in path order, so a.yaml holds the first price.
  EXPECT_THAT(Formatted(result),
              ElementsAre("b.yaml:5:3: pricing.gpt-4.1: model \"gpt-4.1\" is "
                          "already priced at a.yaml:6:3; price each model "
                          "once"));
  // Also across documents of one file.
  EXPECT_THAT(
      Errors(absl::StrCat(kHeader, kGpt41, "---\n", kHeader, kGpt41)),
      ElementsAre(HasSubstr("p.yaml:11:3: pricing.gpt-4.1: model \"gpt-4.1\" "
                            "is already priced at p.yaml:5:3")));
}

TEST(CompilePolicyTest, DefaultsTwiceNamesTheFirst) {
  CompileResult result = CompilePolicy({
      SourceFile{"a.yaml",
                 absl::StrCat(kHeader, kGpt41,
                              "defaults: { max_output_tokens: 1 }\n")},
      SourceFile{"b.yaml",
                 absl::StrCat(kHeader, "defaults: { max_output_tokens: 2 }\n")},
  });
  EXPECT_EQ(result.policy, nullptr);
  EXPECT_THAT(Formatted(result),
              ElementsAre("b.yaml:4:1: defaults: defaults is already set at "
                          "a.yaml:6:1; set it once across all policy files"));
}

TEST(CompilePolicyTest, SkipsPolicyTests) {
  CompileResult result = CompilePolicy({
      SourceFile{"p.yaml", absl::StrCat(kHeader, kGpt41,
                                        "---\napiVersion: bursar.dev/v1\nkind: "
                                        "PolicyTest\ncases: []\n")},
      SourceFile{"p_test.yaml", "this is: [not even valid yaml"},
  });
  ASSERT_NE(result.policy, nullptr)
      << ::testing::PrintToString(Formatted(result));
  EXPECT_THAT(result.diagnostics, IsEmpty());
  // The test file does not change the version either.
  EXPECT_EQ(result.policy->version(),
            CompileOne(absl::StrCat(kHeader, kGpt41,
                                    "---\napiVersion: bursar.dev/v1\nkind: "
                                    "PolicyTest\ncases: []\n"))
                .policy->version());
}

TEST(CompilePolicyTest, VersionDependsOnContentNotOrder) {
  const SourceFile a{"a.yaml", absl::StrCat(kHeader, kGpt41)};
  const SourceFile b{"b.yaml", absl::StrCat(kHeader,
                                            "defaults: { max_output_tokens: "
                                            "100 }\n")};
  CompileResult ab = CompilePolicy({a, b});
  CompileResult ba = CompilePolicy({b, a});
  ASSERT_NE(ab.policy, nullptr);
  ASSERT_NE(ba.policy, nullptr);
  EXPECT_EQ(ab.policy->version(), ba.policy->version());
  EXPECT_THAT(ab.policy->version(), MatchesRegex("[0-9a-f]{16}"));

  // Same content, other path: another version.
  CompileResult renamed = CompilePolicy({SourceFile{"c.yaml", a.content}, b});
  ASSERT_NE(renamed.policy, nullptr);
  EXPECT_NE(renamed.policy->version(), ab.policy->version());
  // One changed byte: another version.
  SourceFile b2 = b;
  b2.content[b2.content.size() - 4] = '2';
  CompileResult changed = CompilePolicy({a, b2});
  ASSERT_NE(changed.policy, nullptr);
  EXPECT_EQ(changed.policy->defaults().max_output_tokens, 102);
  EXPECT_NE(changed.policy->version(), ab.policy->version());
  // Moving bytes between path and content is not a collision by
  // construction (the separator).
  CompileResult shifted =
      CompilePolicy({SourceFile{"a.yam", absl::StrCat("l", a.content)}, b});
  EXPECT_NE(shifted.policy == nullptr ? "" : shifted.policy->version(),
            ab.policy->version());
}

TEST(CompilePolicyTest, KnownFnv1aValue) {
  // FNV-1a 64 of "p.yaml\0<content>\0", computed independently; a change
  // here changes every stored policy version.
  const std::string content = absl::StrCat(kHeader, kGpt41);
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : absl::StrCat("p.yaml", std::string(1, '\0'), content,
                                      std::string(1, '\0'))) {
    hash = (hash ^ c) * 0x100000001b3ULL;
  }
  const std::string expected = absl::StrFormat("%016x", hash);
  CompileResult result = CompileOne(content);
  ASSERT_NE(result.policy, nullptr);
  EXPECT_EQ(result.policy->version(), expected);
}

TEST(CompilePolicyTest, SamePathTwiceIsAnError) {
  const SourceFile a{"a.yaml", absl::StrCat(kHeader, kGpt41)};
  CompileResult result = CompilePolicy({a, a});
  EXPECT_EQ(result.policy, nullptr);
  EXPECT_THAT(Formatted(result), Contains(HasSubstr("a.yaml: this file is "
                                                    "given twice")));
}

TEST(FormatDiagnosticTest, Shapes) {
  Diagnostic d;
  d.path = "pricing.yaml";
  d.line = 12;
  d.column = 5;
  d.field = "pricing.gpt-4.1.output";
  d.message = "boom";
  EXPECT_EQ(FormatDiagnostic(d),
            "pricing.yaml:12:5: pricing.gpt-4.1.output: boom");
  d.column = 0;
  EXPECT_EQ(FormatDiagnostic(d),
            "pricing.yaml:12: pricing.gpt-4.1.output: boom");
  d.line = 0;
  d.field = "";
  d.severity = Diagnostic::Severity::kWarning;
  EXPECT_EQ(FormatDiagnostic(d), "pricing.yaml: warning: boom");
  d.path = "";
  EXPECT_EQ(FormatDiagnostic(d), "warning: boom");
}

// The files of a directory, as a caller such as bursarctl would read them.
std::vector<SourceFile> ReadDirectory(const std::filesystem::path& dir) {
  std::vector<SourceFile> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::ostringstream content;
    content << in.rdbuf();
    files.push_back(
        SourceFile{entry.path().filename().string(), content.str()});
  }
  return files;
}

TEST(ShippedPoliciesTest, ExampleDirectoryCompiles) {
  const std::vector<SourceFile> files = ReadDirectory(
      std::filesystem::path(BURSAR_SOURCE_DIR) / "policies" / "example");
  ASSERT_THAT(files, SizeIs(::testing::Ge(2)));
  CompileResult result = CompilePolicy(files);
  ASSERT_NE(result.policy, nullptr)
      << ::testing::PrintToString(Formatted(result));
  EXPECT_THAT(result.diagnostics, IsEmpty())
      << ::testing::PrintToString(Formatted(result));
  const CompiledPolicy& policy = *result.policy;
  EXPECT_EQ(policy.defaults().max_output_tokens, 4096);
  EXPECT_EQ(policy.defaults().unknown_model, UnknownModelAction::kReject);

  struct Expected {
    const char* model;
    const char* provider;
    const char* input;
    const char* cached_input;
    const char* output;
  };
  const Expected kCatalog[] = {
      {"gpt-4.1", "openai", "2.00", "0.50", "8.00"},
      {"gpt-4.1-mini", "openai", "0.40", "0.10", "1.60"},
      {"gpt-4.1-nano", "openai", "0.10", "0.025", "0.40"},
      {"gpt-4o", "openai", "2.50", "1.25", "10.00"},
      {"gpt-4o-mini", "openai", "0.15", "0.075", "0.60"},
      {"o4-mini", "openai", "1.10", "0.275", "4.40"},
      {"o3", "openai", "2.00", "0.50", "8.00"},
      {"claude-opus-4", "anthropic", "15.00", "1.50", "75.00"},
      {"claude-sonnet-4", "anthropic", "3.00", "0.30", "15.00"},
      {"claude-3-5-haiku", "anthropic", "0.80", "0.08", "4.00"},
      {"gemini-2.5-pro", "google", "1.25", "0.31", "10.00"},
      {"gemini-2.5-flash", "google", "0.30", "0.075", "2.50"},
      {"gemini-2.0-flash", "google", "0.10", "0.025", "0.40"},
  };
  EXPECT_THAT(policy.prices(), SizeIs(std::size(kCatalog)));
  for (const Expected& e : kCatalog) {
    const ModelPrice* price = policy.FindPrice(e.model);
    ASSERT_NE(price, nullptr) << e.model;
    EXPECT_EQ(price->provider, e.provider) << e.model;
    EXPECT_EQ(FormatUsdNanos(price->input_nanos_per_mtok), e.input) << e.model;
    EXPECT_EQ(FormatUsdNanos(price->cached_input_nanos_per_mtok),
              e.cached_input)
        << e.model;
    EXPECT_EQ(FormatUsdNanos(price->output_nanos_per_mtok), e.output)
        << e.model;
  }
}

}  // namespace
}  // namespace bursar::policy
