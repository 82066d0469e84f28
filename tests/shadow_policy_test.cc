// Shadow mode on a real bursard: a version pushed with --shadow is planned
// beside the active one on every Check without changing any answer; the
// Checks it would answer differently are counted and sampled exactly
// (GetShadowReport, `bursarctl policy shadow`); the shadow survives a
// restart; promoting it makes its answers the real ones and ends the report;
// --stop ends another.

#include <stdio.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// A deny rule the active policy does not have.
constexpr char kMarketingDeny[] = R"yaml(apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: marketing-guardrail }
deny:
  - name: marketing-no-gpt41
    when: request.labels.team == "marketing" && request.model == "gpt-4.1"
    message: "marketing uses gpt-4.1-mini"
)yaml";

CliRun Bursarctl(const std::string& server, const std::string& args) {
  return RunBursarctl(BURSARCTL_PATH, server, args);
}

class ShadowPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.Sub("policies"));
    std::filesystem::create_directories(dir_.Sub("candidate"));
    for (const char* name : {"pricing.yaml", "defaults.yaml"}) {
      const std::string content =
          ReadFile(absl::StrCat(BURSAR_POLICY_DIR, "/", name));
      WriteFile(dir_.Sub(absl::StrCat("policies/", name)), content);
      WriteFile(dir_.Sub(absl::StrCat("candidate/", name)), content);
    }
    // The candidate: gpt-4.1 output at $16/M, and marketing barred from
    // gpt-4.1.
    WriteFile(dir_.Sub("candidate/pricing.yaml"),
              PricingWithGpt41Output("16.00"));
    WriteFile(dir_.Sub("candidate/marketing.yaml"), kMarketingDeny);
    options_.data_dir = dir_.Sub("data");
    options_.policy_dir = dir_.Sub("policies");
    server_ = std::make_unique<BursardProcess>(options_, dir_.path());
    ASSERT_TRUE(server_->Start());

    v1::SetBudgetRequest set;
    *set.mutable_budget() =
        MakeBudget("org", {}, v1::PERIOD_NONE, 1'000'000'000'000);
    set.set_actor("finance");
    v1::SetBudgetResponse set_response;
    BURSAR_ASSERT_OK(server_->SetBudget(set, &set_response));
  }

  v1::CheckResponse Check(const std::string& model, const std::string& team,
                          const std::string& request_id = "") {
    v1::CheckResponse response;
    BURSAR_EXPECT_OK(server_->Check(
        MakeCheck(model, 1'000, 500, {{"team", team}}, request_id), &response));
    return response;
  }

  v1::GetShadowReportResponse Report() {
    v1::GetShadowReportResponse response;
    BURSAR_EXPECT_OK(server_->admin().GetShadowReport(
        Call().get(), v1::GetShadowReportRequest(), &response));
    return response;
  }

  int64_t HeldNanos() {
    v1::GetBudgetRequest get;
    get.set_name("org");
    v1::GetBudgetResponse org;
    EXPECT_TRUE(server_->GetBudget(get, &org).ok());
    return org.held_nanos();
  }

  // 1000 input tokens at $2.00/M plus 500 output tokens at $8.00 or $16.00/M
  // (gpt-4.1); at $0.40/M and $1.60/M (gpt-4.1-mini).
  static constexpr int64_t kGpt41At8 = 2'000'000 + 4'000'000;
  static constexpr int64_t kGpt41At16 = 2'000'000 + 8'000'000;
  static constexpr int64_t kMini = 400'000 + 800'000;

  TempDir dir_;
  BursardOptions options_;
  std::unique_ptr<BursardProcess> server_;
};

TEST_F(ShadowPolicyTest, CountSampleRestartPromote) {
  const std::string address = server_->address();
  const std::string v1 = Check("gpt-4.1-mini", "search").policy_version();
  const int64_t held_before = HeldNanos();

  // Push the candidate in shadow with bursarctl, as CI would.
  CliRun run =
      Bursarctl(address, absl::StrCat("policy push ", dir_.Sub("candidate"),
                                      " --shadow --message 'gpt-4.1 at $16, no "
                                      "marketing on gpt-4.1'"));
  ASSERT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("runs in shadow beside active version"));
  v1::GetShadowReportResponse report = Report();
  const std::string shadow = report.version();
  ASSERT_FALSE(shadow.empty());
  EXPECT_NE(shadow, v1);
  EXPECT_EQ(report.active_version(), v1);
  EXPECT_EQ(report.checks_compared(), 0);

  // Four Checks: the real answers are v1's.
  const v1::CheckResponse search = Check("gpt-4.1", "search", "req-search");
  EXPECT_EQ(search.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(search.policy_version(), v1);
  EXPECT_EQ(search.estimated_cost_nanos(), kGpt41At8);
  const v1::CheckResponse marketing =
      Check("gpt-4.1", "marketing", "req-marketing");
  EXPECT_EQ(marketing.verdict(), v1::VERDICT_ALLOW);
  EXPECT_FALSE(marketing.reservation_id().empty());
  EXPECT_EQ(marketing.reasons_size(), 0);
  EXPECT_EQ(marketing.policy_version(), v1);
  EXPECT_EQ(Check("gpt-4.1-mini", "search").estimated_cost_nanos(), kMini);
  EXPECT_EQ(Check("gpt-4.1-mini", "marketing").verdict(), v1::VERDICT_ALLOW);
  // Only the active estimates are held: the shadow reserves nothing.
  EXPECT_EQ(HeldNanos() - held_before, 2 * kGpt41At8 + 2 * kMini);

  // Two of them would differ: the price, and the deny rule.
  report = Report();
  EXPECT_EQ(report.version(), shadow);
  EXPECT_EQ(report.checks_compared(), 4);
  EXPECT_EQ(report.checks_differing(), 2);
  EXPECT_EQ(report.differences().verdict(), 1);
  EXPECT_EQ(report.differences().estimated_cost(), 1);
  EXPECT_EQ(report.differences().model(), 0);
  EXPECT_EQ(report.differences().max_output_tokens(), 0);
  EXPECT_EQ(report.differences().deny_rule(), 0);
  EXPECT_EQ(report.differences().error(), 0);
  ASSERT_THAT(report.samples(), SizeIs(2));
  const v1::ShadowSample& newest = report.samples(0);
  EXPECT_EQ(newest.request_id(), "req-marketing");
  EXPECT_EQ(newest.model(), "gpt-4.1");
  EXPECT_EQ(newest.labels().at("team"), "marketing");
  EXPECT_THAT(newest.differences(), ElementsAre("verdict"));
  EXPECT_EQ(newest.active().verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(newest.shadow().verdict(), v1::VERDICT_DENY);
  EXPECT_EQ(newest.shadow().deny_rule(), "deny:marketing-no-gpt41");
  const v1::ShadowSample& oldest = report.samples(1);
  EXPECT_EQ(oldest.request_id(), "req-search");
  EXPECT_THAT(oldest.differences(), ElementsAre("estimated_cost"));
  EXPECT_EQ(oldest.active().estimated_cost_nanos(), kGpt41At8);
  EXPECT_EQ(oldest.shadow().estimated_cost_nanos(), kGpt41At16);

  // bursarctl shows the same, as a table and as JSON.
  run = Bursarctl(address, "policy shadow");
  ASSERT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output,
              HasSubstr(absl::StrCat("Shadow version ", shadow,
                                     " beside active version ", v1)));
  EXPECT_THAT(run.output, HasSubstr("checks compared      4\n"));
  EXPECT_THAT(run.output, HasSubstr("differing            2 (50.0%)\n"));
  EXPECT_THAT(run.output, HasSubstr("req-marketing"));
  EXPECT_THAT(run.output, HasSubstr("deny deny:marketing-no-gpt41"));
  run = Bursarctl(address, "--json policy shadow --limit 1");
  ASSERT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("\"checks_differing\": \"2\""));
  EXPECT_THAT(run.output, HasSubstr("req-marketing"));
  EXPECT_THAT(run.output, ::testing::Not(HasSubstr("req-search")));
  run = Bursarctl(address, "policy list");
  ASSERT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("SHADOW"));

  // A restart (kill -9) restores the shadow; its counts start again.
  ASSERT_TRUE(server_->CrashAndRestart());
  EXPECT_THAT(server_->Log(), HasSubstr("policy shadow restored"));
  report = Report();
  EXPECT_EQ(report.version(), shadow);
  EXPECT_EQ(report.active_version(), v1);
  EXPECT_EQ(report.checks_compared(), 0);
  EXPECT_EQ(Check("gpt-4.1", "marketing").verdict(), v1::VERDICT_ALLOW);
  report = Report();
  EXPECT_EQ(report.checks_compared(), 1);
  EXPECT_EQ(report.differences().verdict(), 1);

  // Promote: the shadow's answers are the real ones now, and no version
  // runs in shadow.
  run = Bursarctl(server_->address(),
                  absl::StrCat("policy activate ", shadow,
                               " --reason 'shadow looked right'"));
  ASSERT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("Promoted shadow version"));
  const v1::CheckResponse denied = Check("gpt-4.1", "marketing");
  EXPECT_EQ(denied.verdict(), v1::VERDICT_DENY);
  EXPECT_EQ(denied.policy_version(), shadow);
  ASSERT_THAT(denied.reasons(), SizeIs(1));
  EXPECT_EQ(denied.reasons(0).rule(), "deny:marketing-no-gpt41");
  EXPECT_EQ(Check("gpt-4.1", "search").estimated_cost_nanos(), kGpt41At16);
  report = Report();
  EXPECT_EQ(report.version(), "");
  EXPECT_EQ(report.checks_compared(), 0);
  run = Bursarctl(server_->address(), "policy shadow");
  ASSERT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("No policy version runs in shadow."));

  // The audit log tells the story, newest first.
  v1::ListAuditResponse audit;
  BURSAR_ASSERT_OK(server_->ListAudit(3, &audit));
  ASSERT_THAT(audit.records(), SizeIs(3));
  EXPECT_EQ(audit.records(0).action(), "policy.activate");
  EXPECT_EQ(audit.records(0).reason(), "shadow looked right");
  EXPECT_EQ(audit.records(1).action(), "policy.shadow");
  EXPECT_EQ(audit.records(1).target(), absl::StrCat("policy:", shadow));
  EXPECT_EQ(audit.records(2).action(), "budget.set");
  run = Bursarctl(server_->address(), "audit --limit 2");
  ASSERT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output,
              HasSubstr(absl::StrCat("shadow ", shadow, " promoted")));

  // The promotion survives a restart, with no shadow.
  ASSERT_TRUE(server_->CrashAndRestart());
  EXPECT_EQ(Check("gpt-4.1", "marketing").policy_version(), shadow);
  EXPECT_EQ(Report().version(), "");
}

TEST_F(ShadowPolicyTest, StopEndsTheShadowAndSurvivesARestart) {
  CliRun run = Bursarctl(server_->address(),
                         absl::StrCat("policy push ", dir_.Sub("candidate"),
                                      " --shadow --message candidate"));
  ASSERT_EQ(run.exit_status, 0) << run.output;
  const std::string shadow = Report().version();
  ASSERT_FALSE(shadow.empty());
  Check("gpt-4.1", "marketing");

  // The active version itself cannot run in shadow.
  run = Bursarctl(server_->address(),
                  absl::StrCat("policy push ", dir_.Sub("policies"),
                               " --shadow --message same"));
  EXPECT_EQ(run.exit_status, 1) << run.output;
  EXPECT_THAT(run.output, HasSubstr("is the active version"));
  EXPECT_EQ(Report().version(), shadow);

  run = Bursarctl(server_->address(),
                  "policy shadow --stop --reason 'not this quarter'");
  ASSERT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output,
              HasSubstr(absl::StrCat("Stopped shadow version ", shadow)));
  EXPECT_THAT(run.output, HasSubstr("checks compared      1\n"));
  EXPECT_EQ(Report().version(), "");
  run = Bursarctl(server_->address(), "policy shadow --stop");
  ASSERT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("nothing changed"));

  ASSERT_TRUE(server_->CrashAndRestart());
  EXPECT_EQ(Report().version(), "");
  // The version stays stored, and the active one unchanged.
  v1::ListPolicyVersionsResponse versions;
  BURSAR_ASSERT_OK(server_->admin().ListPolicyVersions(
      Call().get(), v1::ListPolicyVersionsRequest(), &versions));
  ASSERT_THAT(versions.versions(), SizeIs(2));
  for (const v1::PolicyVersion& v : versions.versions()) {
    EXPECT_FALSE(v.shadow()) << v.version();
    EXPECT_EQ(v.active(), v.version() != shadow) << v.version();
  }
}

}  // namespace
}  // namespace bursar::testing
