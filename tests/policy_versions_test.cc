// Policy versions on a real bursard: an invalid push changes nothing, a good
// one changes Check's version and estimates at once while reservations made
// before keep their prices, a pushed version survives kill -9, and
// ActivatePolicyVersion rolls back.

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

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

CliRun Bursarctl(const std::string& server, const std::string& args) {
  return RunBursarctl(BURSARCTL_PATH, server, args);
}

class PolicyVersionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The server's --policy_dir: a copy of policies/example.
    std::filesystem::create_directories(dir_.Sub("policies"));
    for (const char* name : {"pricing.yaml", "defaults.yaml"}) {
      WriteFile(dir_.Sub(absl::StrCat("policies/", name)),
                ReadFile(absl::StrCat(BURSAR_POLICY_DIR, "/", name)));
    }
    options_.data_dir = dir_.Sub("data");
    options_.policy_dir = dir_.Sub("policies");
    server_ = std::make_unique<BursardProcess>(options_, dir_.path());
    ASSERT_TRUE(server_->Start());
  }

  v1::PushPolicyResponse Push(const std::string& pricing,
                              const std::string& message) {
    v1::PushPolicyRequest request;
    v1::PolicyFile* file = request.add_files();
    file->set_path("pricing.yaml");
    file->set_content(pricing);
    file = request.add_files();
    file->set_path("defaults.yaml");
    file->set_content(ReadFile(dir_.Sub("policies/defaults.yaml")));
    request.set_author("ci@example.com");
    request.set_message(message);
    v1::PushPolicyResponse response;
    BURSAR_EXPECT_OK(
        server_->admin().PushPolicy(Call().get(), request, &response));
    return response;
  }

  v1::ListPolicyVersionsResponse Versions() {
    v1::ListPolicyVersionsResponse response;
    BURSAR_EXPECT_OK(server_->admin().ListPolicyVersions(
        Call().get(), v1::ListPolicyVersionsRequest(), &response));
    return response;
  }

  // A dry-run Check of gpt-4.1 with 1000 input and 500 output tokens.
  v1::CheckResponse Probe() {
    v1::CheckRequest request = MakeCheck("gpt-4.1", 1'000, 500);
    request.set_dry_run(true);
    v1::CheckResponse response;
    BURSAR_EXPECT_OK(server_->Check(request, &response));
    return response;
  }

  // 1000 input tokens at $2.00/M plus 500 output tokens at $8.00 or
  // $16.00/M.
  static constexpr int64_t kEstimateAt8 = 2'000'000 + 4'000'000;
  static constexpr int64_t kEstimateAt16 = 2'000'000 + 8'000'000;

  TempDir dir_;
  BursardOptions options_;
  std::unique_ptr<BursardProcess> server_;
};

TEST_F(PolicyVersionsTest, PushRejectRestartAndRollBack) {
  // The first start stored --policy_dir as the one version.
  const v1::ListPolicyVersionsResponse first = Versions();
  ASSERT_THAT(first.versions(), SizeIs(1));
  const std::string v1 = first.versions(0).version();
  EXPECT_TRUE(first.versions(0).active());
  EXPECT_EQ(first.versions(0).author(), "bursard --policy_dir");
  v1::CheckResponse probe = Probe();
  EXPECT_EQ(probe.policy_version(), v1);
  EXPECT_EQ(probe.estimated_cost_nanos(), kEstimateAt8);

  // A budget, and a call reserved under v1 and still open.
  v1::SetBudgetRequest set;
  *set.mutable_budget() =
      MakeBudget("org", {}, v1::PERIOD_NONE, 1'000'000'000'000);
  set.set_actor("finance");
  v1::SetBudgetResponse set_response;
  BURSAR_ASSERT_OK(server_->SetBudget(set, &set_response));
  v1::CheckResponse open;
  BURSAR_ASSERT_OK(server_->Check(MakeCheck("gpt-4.1", 1'000, 500), &open));
  ASSERT_EQ(open.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(open.policy_version(), v1);

  // An invalid push: FAILED_PRECONDITION listing the errors, and nothing
  // changes.
  v1::PushPolicyRequest invalid;
  v1::PolicyFile* bad = invalid.add_files();
  bad->set_path("pricing.yaml");
  bad->set_content(PricingWithGpt41Output("sixteen"));
  invalid.set_message("typo");
  v1::PushPolicyResponse rejected;
  const grpc::Status status =
      server_->admin().PushPolicy(Call().get(), invalid, &rejected);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(),
              ContainsRegex("pricing\\.yaml:[0-9]+:[0-9]+: .*sixteen"));
  probe = Probe();
  EXPECT_EQ(probe.policy_version(), v1);
  EXPECT_EQ(probe.estimated_cost_nanos(), kEstimateAt8);
  EXPECT_THAT(Versions().versions(), SizeIs(1));

  // A valid push with a new price: the next Check runs it.
  const v1::PushPolicyResponse pushed =
      Push(PricingWithGpt41Output("16.00"), "gpt-4.1 output now $16/M");
  EXPECT_THAT(pushed.diagnostics(), IsEmpty());
  const std::string v2 = pushed.version();
  ASSERT_FALSE(v2.empty());
  EXPECT_NE(v2, v1);
  EXPECT_TRUE(pushed.created());
  EXPECT_EQ(pushed.previous_version(), v1);
  probe = Probe();
  EXPECT_EQ(probe.policy_version(), v2);
  EXPECT_EQ(probe.estimated_cost_nanos(), kEstimateAt16);

  // The call reserved under v1 is charged at v1's prices: 1000 input tokens
  // at $2.00/M and 300 output tokens at $8.00/M, not $16.00/M.
  v1::ReportResponse report;
  BURSAR_ASSERT_OK(server_->Report(
      MakeReport(open.reservation_id(), 1'000, 0, 300), &report));
  EXPECT_EQ(report.cost_nanos(), 2'000'000 + 2'400'000);
  v1::GetBudgetRequest get;
  get.set_name("org");
  v1::GetBudgetResponse org;
  BURSAR_ASSERT_OK(server_->GetBudget(get, &org));
  EXPECT_EQ(org.spent_nanos(), 2'000'000 + 2'400'000);

  // kill -9: the pushed version is still active after the restart, although
  // --policy_dir still holds v1's files.
  ASSERT_TRUE(server_->CrashAndRestart());
  probe = Probe();
  EXPECT_EQ(probe.policy_version(), v2);
  EXPECT_EQ(probe.estimated_cost_nanos(), kEstimateAt16);
  EXPECT_THAT(server_->Log(), HasSubstr("--policy_dir is not used"));

  // Rollback.
  v1::ActivatePolicyVersionRequest activate;
  activate.set_version(v1);
  activate.set_actor("oncall@example.com");
  activate.set_reason("the new price was a mistake");
  v1::ActivatePolicyVersionResponse activated;
  BURSAR_ASSERT_OK(server_->admin().ActivatePolicyVersion(
      Call().get(), activate, &activated));
  EXPECT_EQ(activated.version().version(), v1);
  EXPECT_TRUE(activated.version().active());
  EXPECT_EQ(activated.previous_version(), v2);
  probe = Probe();
  EXPECT_EQ(probe.policy_version(), v1);
  EXPECT_EQ(probe.estimated_cost_nanos(), kEstimateAt8);

  // Both versions are listed, newest first, exactly one active.
  const v1::ListPolicyVersionsResponse versions = Versions();
  ASSERT_THAT(versions.versions(), SizeIs(2));
  EXPECT_EQ(versions.versions(0).version(), v2);
  EXPECT_FALSE(versions.versions(0).active());
  EXPECT_EQ(versions.versions(0).author(), "ci@example.com");
  EXPECT_EQ(versions.versions(0).message(), "gpt-4.1 output now $16/M");
  EXPECT_EQ(versions.versions(1).version(), v1);
  EXPECT_TRUE(versions.versions(1).active());

  // GetPolicy hands back a version's files as pushed.
  v1::GetPolicyRequest get_v2;
  get_v2.set_version(v2);
  v1::GetPolicyResponse stored;
  BURSAR_ASSERT_OK(server_->admin().GetPolicy(Call().get(), get_v2, &stored));
  ASSERT_THAT(stored.files(), SizeIs(2));
  EXPECT_EQ(stored.files(1).path(), "pricing.yaml");
  EXPECT_EQ(stored.files(1).content(), PricingWithGpt41Output("16.00"));

  // The audit log tells the story, newest first.
  v1::ListAuditResponse audit;
  BURSAR_ASSERT_OK(server_->ListAudit(10, &audit));
  ASSERT_THAT(audit.records(), SizeIs(4));
  EXPECT_EQ(audit.records(0).action(), "policy.activate");
  EXPECT_EQ(audit.records(0).target(), absl::StrCat("policy:", v1));
  EXPECT_EQ(audit.records(0).actor(), "oncall@example.com");
  EXPECT_THAT(audit.records(0).before_json(), HasSubstr(v2));
  EXPECT_EQ(audit.records(1).action(), "policy.push");
  EXPECT_EQ(audit.records(1).reason(), "gpt-4.1 output now $16/M");
  EXPECT_EQ(audit.records(2).action(), "budget.set");
  EXPECT_EQ(audit.records(3).action(), "policy.push");
  EXPECT_EQ(audit.records(3).actor(), "bursard");

  // And the rollback survives a restart too.
  ASSERT_TRUE(server_->CrashAndRestart());
  EXPECT_EQ(Probe().policy_version(), v1);
}

TEST_F(PolicyVersionsTest, PolicySourceDirRunsTheDirectoryAfterARestart) {
  const std::string v1 = Probe().policy_version();
  const v1::PushPolicyResponse pushed =
      Push(PricingWithGpt41Output("16.00"), "pushed");
  ASSERT_FALSE(pushed.version().empty());
  ASSERT_EQ(server_->Terminate(), 0);

  // An operator deploys policies with the binary: the directory wins.
  BursardOptions options = options_;
  options.extra_flags = {"--policy_source=dir"};
  server_ = std::make_unique<BursardProcess>(options, dir_.path());
  ASSERT_TRUE(server_->Start());
  EXPECT_EQ(Probe().policy_version(), v1);
  EXPECT_EQ(Probe().estimated_cost_nanos(), kEstimateAt8);
  const v1::ListPolicyVersionsResponse versions = Versions();
  ASSERT_THAT(versions.versions(), SizeIs(2));
  for (const v1::PolicyVersion& v : versions.versions()) {
    EXPECT_EQ(v.active(), v.version() == v1) << v.version();
  }
}

TEST_F(PolicyVersionsTest, BadRequestsAreErrorsAndChangeNothing) {
  const std::string v1 = Probe().policy_version();
  v1::PushPolicyRequest request;
  v1::PolicyFile* file = request.add_files();
  file->set_path("../pricing.yaml");
  file->set_content(PricingWithGpt41Output("16.00"));
  v1::PushPolicyResponse response;
  const grpc::Status status =
      server_->admin().PushPolicy(Call().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("files[0].path"));

  v1::ActivatePolicyVersionRequest activate;
  activate.set_version("0000000000000000");
  v1::ActivatePolicyVersionResponse activated;
  EXPECT_EQ(server_->admin()
                .ActivatePolicyVersion(Call().get(), activate, &activated)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::GetPolicyRequest get;
  get.set_version("0000000000000000");
  v1::GetPolicyResponse got;
  EXPECT_EQ(server_->admin().GetPolicy(Call().get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Dry run: compiled, not stored.
  v1::PushPolicyRequest dry;
  file = dry.add_files();
  file->set_path("pricing.yaml");
  file->set_content(PricingWithGpt41Output("16.00"));
  dry.set_dry_run(true);
  BURSAR_ASSERT_OK(server_->admin().PushPolicy(Call().get(), dry, &response));
  EXPECT_EQ(response.version(), "");
  EXPECT_FALSE(response.compiled_version().empty());

  EXPECT_EQ(Probe().policy_version(), v1);
  EXPECT_THAT(Versions().versions(), SizeIs(1));
}

// The CI workflow with bursarctl: check, diff, push, and their exit codes.
TEST_F(PolicyVersionsTest, BursarctlCheckDiffPushAsCiRunsThem) {
  const std::string& server = server_->address();
  const std::string work = dir_.Sub("policies");  // what bursard started with
  const std::string v1 = Probe().policy_version();

  CliRun run = Bursarctl(server, absl::StrCat("policy check ", work));
  EXPECT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr(absl::StrCat("OK, version ", v1)));
  run = Bursarctl(server, absl::StrCat("policy diff ", work));
  EXPECT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("matches the active version"));

  // A typo: check and push fail with file:line:column, nothing changes.
  WriteFile(dir_.Sub("policies/pricing.yaml"),
            PricingWithGpt41Output("sixteen"));
  run = Bursarctl(server, absl::StrCat("policy check ", work));
  EXPECT_EQ(run.exit_status, 1) << run.output;
  EXPECT_THAT(run.output,
              ContainsRegex("pricing\\.yaml:[0-9]+:[0-9]+: "
                            "pricing\\.gpt-4\\.1\\.output: .*sixteen"));
  run =
      Bursarctl(server, absl::StrCat("policy push ", work, " --message typo"));
  EXPECT_EQ(run.exit_status, 1) << run.output;
  EXPECT_THAT(run.output, HasSubstr("Rejected: 1 error"));
  EXPECT_EQ(Probe().policy_version(), v1);

  // The fix: diff shows it (exit 1, as diff does), push activates it.
  WriteFile(dir_.Sub("policies/pricing.yaml"), PricingWithGpt41Output("16.00"));
  run = Bursarctl(server, absl::StrCat("policy diff ", work));
  EXPECT_EQ(run.exit_status, 1) << run.output;
  EXPECT_THAT(run.output, HasSubstr("-  gpt-4.1: "));
  EXPECT_THAT(run.output, HasSubstr("output: \"16.00\" }"));
  run = Bursarctl(server, absl::StrCat("policy push ", work,
                                       " --message 'gpt-4.1 at $16'"));
  EXPECT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("Pushed policy version"));
  const v1::CheckResponse probe = Probe();
  EXPECT_NE(probe.policy_version(), v1);
  EXPECT_EQ(probe.estimated_cost_nanos(), kEstimateAt16);
  run = Bursarctl(server, absl::StrCat("policy diff ", work));
  EXPECT_EQ(run.exit_status, 0) << run.output;

  // Rollback from the command line.
  run =
      Bursarctl(server, absl::StrCat("policy activate ", v1, " --reason oops"));
  EXPECT_EQ(run.exit_status, 0) << run.output;
  EXPECT_EQ(Probe().policy_version(), v1);
  run = Bursarctl(server, "policy list");
  EXPECT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("gpt-4.1 at $16"));
}

// `policy test` gates a push in CI: exit 0 when every case passes, 1 with
// the failing case's file:line otherwise.
TEST_F(PolicyVersionsTest, BursarctlPolicyTestReportsTheFailingCase) {
  const std::string example =
      std::string(BURSAR_SOURCE_DIR) + "/policies/marketing-guardrails";
  CliRun run = Bursarctl(server_->address(), "policy test " + example);
  EXPECT_EQ(run.exit_status, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("4 passed, 0 failed"));

  const std::string work = dir_.Sub("guardrails");
  std::filesystem::create_directories(work);
  std::ifstream policy_in(example + "/policy.yaml");
  std::stringstream policy_text;
  policy_text << policy_in.rdbuf();
  WriteFile(work + "/policy.yaml", policy_text.str());
  WriteFile(work + "/policy_test.yaml", R"yaml(apiVersion: bursar.dev/v1
kind: PolicyTest
metadata: { name: wrong }
cases:
  - name: expects the wrong model
    request: { model: claude-opus-4, labels: { team: research }, input_tokens: 500 }
    expect: { verdict: allow, model: gpt-4.1 }
)yaml");
  run = Bursarctl(server_->address(), "policy test " + work);
  EXPECT_EQ(run.exit_status, 1) << run.output;
  EXPECT_THAT(run.output,
              HasSubstr("policy_test.yaml:5: expects the wrong model: "
                        "expected model gpt-4.1, got claude-opus-4"));
  EXPECT_THAT(run.output, HasSubstr("0 passed, 1 failed"));
}

}  // namespace
}  // namespace bursar::testing
