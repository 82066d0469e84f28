// The Decider over a ledger whose disk fails (FaultInjectionFs): a Check or
// Report that cannot be written fails with UNAVAILABLE and reserves or
// charges nothing; the gateway's retry with the same request_id /
// reservation_id succeeds once the disk is back, and counts once.

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/loader.h"
#include "server/clock.h"
#include "server/decider.h"
#include "server/policy_registry.h"
#include "storage/fault_injection_fs.h"
#include "storage/rocks_ledger.h"
#include "tests/support/temp_dir.h"

namespace bursar::server {
namespace {

constexpr char kPolicy[] = R"yaml(
apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: test }
pricing:
  gpt-4.1: { provider: openai, input: "2.00", cached_input: "0.50", output: "8.00" }
defaults: { max_output_tokens: 1000, unknown_model: reject }
)yaml";

class DeciderFaultTest : public ::testing::TestWithParam<storage::SyncMode> {
 protected:
  void SetUp() override {
    storage::RocksLedgerOptions options;
    options.path = dir_.path();
    options.sync = GetParam();
    options.env = fs_.env();
    auto ledger = storage::OpenRocksLedger(options);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = *std::move(ledger);
    policy::CompileResult compiled =
        policy::CompilePolicy({{"p.yaml", kPolicy}});
    ASSERT_NE(compiled.policy, nullptr);
    policies_ = std::make_unique<PolicyRegistry>(compiled.policy);
    decider_ = std::make_unique<Decider>(ledger_.get(), policies_.get(),
                                         &clock_, DeciderOptions{});
    storage::BudgetSpec spec;
    spec.name = "search";
    spec.amount_nanos = 1'000'000'000;
    spec.period = storage::Period::kMonth;
    spec.selector = {{"team", "search"}};
    ASSERT_TRUE(ledger_->SetBudget(spec, {"test", ""}, clock_.Now()).ok());
  }
  void TearDown() override {
    decider_.reset();
    ledger_.reset();
  }

  v1::CheckRequest Request() {
    v1::CheckRequest request;
    request.set_request_id("req-1");
    request.set_model("gpt-4.1");
    request.set_input_tokens(1000);
    request.set_max_output_tokens(1000);
    (*request.mutable_labels())["team"] = "search";
    return request;
  }

  // held and spent of the search budget now.
  std::pair<int64_t, int64_t> HeldAndSpent() {
    storage::LabelSet labels;
    labels.Add("team", "search");
    auto figures = ledger_->Peek("search", labels, clock_.Now());
    EXPECT_TRUE(figures.ok() && figures->has_value());
    if (!figures.ok() || !figures->has_value()) return {-1, -1};
    return {(*figures)->held_nanos, (*figures)->spent_nanos};
  }

  storage::FaultInjectionFs fs_;
  bursar::testing::TempDir dir_;
  FakeClock clock_{absl::FromUnixSeconds(1'790'000'000)};
  std::unique_ptr<storage::Ledger> ledger_;
  std::unique_ptr<PolicyRegistry> policies_;
  std::unique_ptr<Decider> decider_;
};

TEST_P(DeciderFaultTest, ADiskFailureIsUnavailableAndTheRetrySucceeds) {
  fs_.FailWrites(true);
  v1::CheckResponse failed;
  absl::Status status = decider_->Check(Request(), &failed);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(HeldAndSpent(), std::make_pair(int64_t{0}, int64_t{0}));
  EXPECT_EQ(ledger_->open_holds(), 0u);

  fs_.FailWrites(false);
  v1::CheckResponse check;
  ASSERT_TRUE(decider_->Check(Request(), &check).ok());
  EXPECT_EQ(check.verdict(), v1::VERDICT_ALLOW);
  // 1000 x $2/1M + 1000 x $8/1M
  EXPECT_EQ(HeldAndSpent(), std::make_pair(int64_t{10'000'000}, int64_t{0}));
  // A second retry is the same reservation, not a second hold.
  v1::CheckResponse again;
  ASSERT_TRUE(decider_->Check(Request(), &again).ok());
  EXPECT_EQ(again.reservation_id(), check.reservation_id());
  EXPECT_EQ(HeldAndSpent(), std::make_pair(int64_t{10'000'000}, int64_t{0}));

  v1::ReportRequest report;
  report.set_reservation_id(check.reservation_id());
  report.mutable_usage()->set_input_tokens(1000);
  report.mutable_usage()->set_output_tokens(500);
  report.set_outcome(v1::OUTCOME_SUCCESS);
  fs_.FailWrites(true);
  v1::ReportResponse failed_report;
  status = decider_->Report(report, &failed_report);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(HeldAndSpent(), std::make_pair(int64_t{10'000'000}, int64_t{0}));

  fs_.FailWrites(false);
  v1::ReportResponse reported;
  ASSERT_TRUE(decider_->Report(report, &reported).ok());
  EXPECT_EQ(reported.cost_nanos(), 6'000'000);
  v1::ReportResponse reported_again;
  ASSERT_TRUE(decider_->Report(report, &reported_again).ok());
  EXPECT_EQ(reported_again.cost_nanos(), 6'000'000);
  EXPECT_EQ(HeldAndSpent(), std::make_pair(int64_t{0}, int64_t{6'000'000}));
}

INSTANTIATE_TEST_SUITE_P(SyncModes, DeciderFaultTest,
                         ::testing::Values(storage::SyncMode::kNone,
                                           storage::SyncMode::kGroup,
                                           storage::SyncMode::kAlways));

}  // namespace
}  // namespace bursar::server
