// Tests of the policy commands' formatting: diagnostics, unified diffs of
// policy files, audit summaries.

#include "cli/policy_output.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/policy_files.h"

namespace bursar::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// "1\n2\n...\nn\n".
std::string Numbered(int n) {
  std::string text;
  for (int i = 1; i <= n; ++i) absl::StrAppend(&text, i, "\n");
  return text;
}

TEST(UnifiedDiffTest, EqualTextsHaveNoDiff) {
  EXPECT_EQ(UnifiedDiff("a\nb\n", "a\nb\n", "x", "y"), "");
  EXPECT_EQ(UnifiedDiff("", "", "x", "y"), "");
}

TEST(UnifiedDiffTest, ChangedLineWithThreeLinesOfContext) {
  std::string after = Numbered(10);
  after.replace(after.find("5\n"), 2, "five\n");
  // As `diff -u` prints it.
  EXPECT_EQ(UnifiedDiff(Numbered(10), after, "active/p.yaml", "dir/p.yaml"),
            "--- active/p.yaml\n"
            "+++ dir/p.yaml\n"
            "@@ -2,7 +2,7 @@\n"
            " 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n");
}

TEST(UnifiedDiffTest, DistantChangesMakeTwoHunksCloseOnesOne) {
  std::string far = Numbered(20);
  far.replace(far.find("2\n"), 2, "two\n");
  far.replace(far.find("\n19\n") + 1, 3, "nineteen\n");
  EXPECT_EQ(UnifiedDiff(Numbered(20), far, "a", "b"),
            "--- a\n+++ b\n"
            "@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n"
            "@@ -16,5 +16,5 @@\n 16\n 17\n 18\n-19\n+nineteen\n 20\n");

  // Six equal lines between two changes: one hunk (diff -u joins them).
  std::string near = Numbered(20);
  near.replace(near.find("\n3\n") + 1, 2, "three\n");
  near.replace(near.find("\n10\n") + 1, 3, "ten\n");
  EXPECT_EQ(UnifiedDiff(Numbered(20), near, "a", "b"),
            "--- a\n+++ b\n"
            "@@ -1,13 +1,13 @@\n 1\n 2\n-3\n+three\n 4\n 5\n 6\n 7\n 8\n 9\n"
            "-10\n+ten\n 11\n 12\n 13\n");
}

TEST(UnifiedDiffTest, InsertionsAndDeletionsUseLineCounts) {
  EXPECT_EQ(UnifiedDiff("", "a\nb\n", "/dev/null", "dir/new.yaml"),
            "--- /dev/null\n+++ dir/new.yaml\n@@ -0,0 +1,2 @@\n+a\n+b\n");
  EXPECT_EQ(UnifiedDiff("a\nb\n", "", "active/old.yaml", "/dev/null"),
            "--- active/old.yaml\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n");
  EXPECT_EQ(UnifiedDiff("a\nc\n", "a\nb\nc\n", "x", "y"),
            "--- x\n+++ y\n@@ -1,2 +1,3 @@\n a\n+b\n c\n");
}

TEST(UnifiedDiffTest, MissingFinalNewlineIsMarked) {
  EXPECT_EQ(UnifiedDiff("a\nb\n", "a\nb", "x", "y"),
            "--- x\n+++ y\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n"
            "\\ No newline at end of file\n");
}

TEST(UnifiedDiffTest, MovedBlockKeepsTheLongestCommonPart) {
  EXPECT_EQ(UnifiedDiff("a\nb\nc\nd\n", "b\nc\nd\na\n", "x", "y"),
            "--- x\n+++ y\n@@ -1,4 +1,4 @@\n-a\n b\n c\n d\n+a\n");
}

TEST(UnifiedDiffTest, HugeTextsStillDiff) {
  // 3000 x 3000 differing lines is over the LCS table's limit: the middle
  // shows as removed and added whole, with the right counts.
  std::string before;
  std::string after;
  for (int i = 0; i < 3000; ++i) {
    absl::StrAppend(&before, "old ", i, "\n");
    absl::StrAppend(&after, "new ", i, "\n");
  }
  const std::string diff = UnifiedDiff(before, after, "x", "y");
  EXPECT_THAT(diff, HasSubstr("@@ -1,3000 +1,3000 @@\n-old 0\n"));
  EXPECT_THAT(diff, HasSubstr("-old 2999\n+new 0\n"));
}

TEST(DiffPolicyFilesTest, ReportsChangedAddedAndRemovedFiles) {
  const std::vector<policy::SourceFile> active = {
      {"defaults.yaml", "d\n"},
      {"old.yaml", "gone\n"},
      {"pricing.yaml", "x: 1\n"},
  };
  const std::vector<policy::SourceFile> local = {
      {"defaults.yaml", "d\n"},
      {"pricing.yaml", "x: 2\n"},
      {"teams/search.yaml", "s\n"},
  };
  const PolicyFilesDiff diff =
      DiffPolicyFiles(active, local, "active-abc", "policies");
  EXPECT_FALSE(diff.identical());
  EXPECT_THAT(diff.changed, ElementsAre("pricing.yaml"));
  EXPECT_THAT(diff.added, ElementsAre("teams/search.yaml"));
  EXPECT_THAT(diff.removed, ElementsAre("old.yaml"));
  EXPECT_EQ(diff.text,
            "--- active-abc/old.yaml\n+++ /dev/null\n@@ -1,1 +0,0 @@\n-gone\n"
            "--- active-abc/pricing.yaml\n+++ policies/pricing.yaml\n"
            "@@ -1,1 +1,1 @@\n-x: 1\n+x: 2\n"
            "--- /dev/null\n+++ policies/teams/search.yaml\n"
            "@@ -0,0 +1,1 @@\n+s\n");

  const PolicyFilesDiff same = DiffPolicyFiles(active, active, "a", "b");
  EXPECT_TRUE(same.identical());
  EXPECT_EQ(same.text, "");
}

TEST(DiffPolicyFilesTest, EmptyFileAddedShowsHeaders) {
  const PolicyFilesDiff diff =
      DiffPolicyFiles({}, {{"empty.yaml", ""}}, "active", "dir");
  EXPECT_THAT(diff.added, ElementsAre("empty.yaml"));
  EXPECT_EQ(diff.text, "--- /dev/null\n+++ dir/empty.yaml\n");
}

TEST(PolicyDiagnosticsTest, FormatsAsTheLoaderDoes) {
  v1::Diagnostic d;
  d.set_severity(v1::Diagnostic::SEVERITY_ERROR);
  d.set_path("pricing.yaml");
  d.set_line(12);
  d.set_column(5);
  d.set_field("pricing.gpt-4.1.output");
  d.set_message("expected a decimal USD amount");
  EXPECT_EQ(FormatDiagnostic(d),
            "pricing.yaml:12:5: pricing.gpt-4.1.output: expected a decimal "
            "USD amount");
  d.set_severity(v1::Diagnostic::SEVERITY_WARNING);
  EXPECT_THAT(FormatDiagnostic(d), HasSubstr("warning: "));

  policy::Diagnostic local;
  local.path = "p.yaml";
  local.line = 3;
  local.message = "m";
  EXPECT_EQ(FormatDiagnostic(server::DiagnosticToProto(local)),
            policy::FormatDiagnostic(local));
}

TEST(PolicyDiagnosticsTest, Counts) {
  EXPECT_EQ(CountDiagnostics(0, 0), "no errors");
  EXPECT_EQ(CountDiagnostics(1, 0), "1 error");
  EXPECT_EQ(CountDiagnostics(2, 1), "2 errors, 1 warning");
  EXPECT_EQ(CountDiagnostics(0, 3), "3 warnings");
}

TEST(DescribePolicyChangeTest, NamesTheActiveVersions) {
  EXPECT_EQ(DescribePolicyChange(R"({"version":"aaa","author":"x"})",
                                 R"({"version":"bbb","created_at":"t"})"),
            "active aaa -> bbb");
  EXPECT_EQ(DescribePolicyChange("", R"({"version":"bbb"})"), "active -> bbb");
  EXPECT_EQ(
      DescribePolicyChange(R"({"version":"aaa"})", R"({"version":"aaa"})"),
      "active unchanged (aaa)");
  EXPECT_EQ(DescribePolicyChange("", ""), "");
  EXPECT_EQ(DescribePolicyChange("", "not json"), "");
  EXPECT_THAT(DescribePolicyChange("", R"({"name":"budget"})"), IsEmpty());
}

TEST(DescribePolicyChangeTest, NamesShadowChanges) {
  EXPECT_EQ(DescribePolicyChange(R"({"version":"aaa","shadow_version":""})",
                                 R"({"version":"aaa","shadow_version":"sss"})"),
            "shadow -> sss");
  EXPECT_EQ(DescribePolicyChange(R"({"version":"aaa","shadow_version":"sss"})",
                                 R"({"version":"aaa","shadow_version":"ttt"})"),
            "shadow sss -> ttt");
  EXPECT_EQ(DescribePolicyChange(R"({"version":"aaa","shadow_version":"sss"})",
                                 R"({"version":"aaa","shadow_version":""})"),
            "shadow sss stopped");
  EXPECT_EQ(DescribePolicyChange(R"({"version":"aaa","shadow_version":"sss"})",
                                 R"({"version":"sss","shadow_version":""})"),
            "active aaa -> sss; shadow sss promoted");
  // A shadow that stays is not mentioned.
  EXPECT_EQ(DescribePolicyChange(R"({"version":"aaa","shadow_version":"sss"})",
                                 R"({"version":"bbb","shadow_version":"sss"})"),
            "active aaa -> bbb");
}

v1::ShadowPlan Plan(v1::Verdict verdict, const std::string& model,
                    int64_t tokens, int64_t nanos) {
  v1::ShadowPlan plan;
  plan.set_verdict(verdict);
  plan.set_model(model);
  plan.set_max_output_tokens(tokens);
  plan.set_estimated_cost_nanos(nanos);
  return plan;
}

TEST(ShadowReportTest, DescribesPlans) {
  EXPECT_EQ(
      DescribeShadowPlan(Plan(v1::VERDICT_ALLOW, "gpt-4.1", 500, 6'000'000)),
      "allow gpt-4.1, 500 tokens, $0.006");
  v1::ShadowPlan deny = Plan(v1::VERDICT_DENY, "gpt-4.1", 500, 6'000'000);
  deny.set_deny_rule("deny:no-opus");
  EXPECT_EQ(DescribeShadowPlan(deny), "deny deny:no-opus");
  v1::ShadowPlan error;
  error.set_error("INVALID_ARGUMENT: model");
  EXPECT_EQ(DescribeShadowPlan(error), "error INVALID_ARGUMENT: model");
}

TEST(ShadowReportTest, RendersCountsAndSamples) {
  EXPECT_THAT(RenderShadowReport(v1::GetShadowReportResponse()),
              HasSubstr("No policy version runs in shadow."));

  v1::GetShadowReportResponse report;
  report.set_version("sss");
  report.set_active_version("aaa");
  report.set_since("2026-03-18T12:00:00Z");
  report.set_checks_compared(3);
  report.set_checks_differing(1);
  report.mutable_differences()->set_estimated_cost(1);
  report.set_sample_capacity(100);
  v1::ShadowSample* sample = report.add_samples();
  sample->set_time("2026-03-18T12:01:00Z");
  sample->set_request_id("req-1");
  sample->set_model("gpt-4.1");
  (*sample->mutable_labels())["team"] = "search";
  sample->add_differences("estimated_cost");
  *sample->mutable_active() =
      Plan(v1::VERDICT_ALLOW, "gpt-4.1", 500, 6'000'000);
  *sample->mutable_shadow() =
      Plan(v1::VERDICT_ALLOW, "gpt-4.1", 500, 10'000'000);
  EXPECT_EQ(
      RenderShadowReport(report),
      "Shadow version sss beside active version aaa, since "
      "2026-03-18T12:00:00Z\n"
      "  checks compared      3\n"
      "  differing            1 (33.3%)\n"
      "    verdict            0\n"
      "    deny rule          0\n"
      "    model              0\n"
      "    max output tokens  0\n"
      "    estimated cost     1\n"
      "    error              0\n"
      "\n"
      "Latest differing checks (1, newest first; 100 are kept):\n"
      "TIME                  REQUEST  MODEL    LABELS       DIFFERS       "
      "  ACTIVE                             SHADOW\n"
      "2026-03-18T12:01:00Z  req-1    gpt-4.1  team=search  "
      "estimated_cost  allow gpt-4.1, 500 tokens, $0.006  allow "
      "gpt-4.1, 500 tokens, $0.01\n");
}

}  // namespace
}  // namespace bursar::cli
