// The policy's rules applied by a real bursard on a real ledger: the
// hospital-copilot example's routes, its 15:00 daily spend SLO, and its
// on_exhausted chain (downgrade, cap to fit, deny) against budgets that
// finance set through the Admin API.

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Property;

// 10:00 in New York on a weekday (EDT, UTC-4).
const absl::Time kMorning = Utc(2026, 3, 10, 14, 0);

class PolicyRulesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_unique<ClockFile>(dir_.Sub("clock"), kMorning);
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    options.clock_file = clock_->path();
    options.policy_dir =
        std::string(BURSAR_SOURCE_DIR) + "/policies/hospital-copilot";
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
    v1::SetBudgetRequest request;
    // $1.00 a day, New York days.
    *request.mutable_budget() =
        MakeBudget("northstar-daily", {}, v1::PERIOD_DAY, 1'000'000'000,
                   "America/New_York");
    v1::SetBudgetResponse response;
    BURSAR_ASSERT_OK(server_->SetBudget(request, &response));
  }

  v1::CheckResponse Check(const v1::CheckRequest& request) {
    v1::CheckResponse response;
    EXPECT_TRUE(server_->Check(request, &response).ok());
    return response;
  }

  // Spends exactly `output_tokens` x $8/1M on gpt-4.1.
  void Spend(int64_t output_tokens) {
    const v1::CheckResponse allowed =
        Check(MakeCheck("gpt-4.1", 0, output_tokens, {{"task", "followup"}}));
    ASSERT_EQ(allowed.verdict(), v1::VERDICT_ALLOW);
    ASSERT_EQ(allowed.model(), "gpt-4.1");
    v1::ReportResponse reported;
    BURSAR_ASSERT_OK(server_->Report(
        MakeReport(allowed.reservation_id(), 0, 0, output_tokens), &reported));
  }

  TempDir dir_;
  std::unique_ptr<ClockFile> clock_;
  std::unique_ptr<BursardProcess> server_;
};

TEST_F(PolicyRulesTest, TriageIsRoutedToTheSmallModel) {
  const v1::CheckResponse response =
      Check(MakeCheck("gpt-4.1", 1'000, 1'000, {{"task", "triage"}}));
  EXPECT_EQ(response.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(response.model(), "o4-mini");
  EXPECT_THAT(
      response.reasons(),
      Contains(Property(&v1::Reason::rule, "route:triage-small-first")));
  // o4-mini's prices: 1,000 x $1.10 + 1,000 x $4.40 per 1M.
  EXPECT_EQ(response.estimated_cost_nanos(), 5'500'000);
}

TEST_F(PolicyRulesTest, TheDailySloDowngradesAndCapsFromThreeOClock) {
  Spend(113'750);  // $0.91 of $1.00
  const v1::CheckRequest call =
      MakeCheck("gpt-4.1", 1'000, 2'000, {{"task", "followup"}});

  clock_->Set(Utc(2026, 3, 10, 18, 59));  // 14:59 in New York
  const v1::CheckResponse before = Check(call);
  EXPECT_EQ(before.model(), "gpt-4.1");
  EXPECT_EQ(before.max_output_tokens(), 2'000);

  clock_->Set(Utc(2026, 3, 10, 19, 0));  // 15:00 in New York
  const v1::CheckResponse after = Check(call);
  EXPECT_EQ(after.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(after.model(), "gpt-4.1-mini");
  EXPECT_EQ(after.max_output_tokens(), 512);
  ASSERT_THAT(after.reasons(),
              Contains(Property(&v1::Reason::rule, "slo:daily-spend-slo")));
  EXPECT_THAT(after.reasons(0).message(), HasSubstr("91.0% spent"));
}

TEST_F(PolicyRulesTest, ShortfallDowngradesThenCapsThenDenies) {
  Spend(124'750);  // $0.998 of $1.00: $0.002 left
  const v1::CheckRequest call =
      MakeCheck("gpt-4.1", 2'000, 2'000, {{"task", "followup"}});
  const v1::CheckResponse capped = Check(call);
  EXPECT_EQ(capped.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(capped.model(), "gpt-4.1-mini");
  // 2,000 x $0.40 = $0.0008 of input leaves $0.0012: 750 tokens at $1.60/1M.
  EXPECT_EQ(capped.max_output_tokens(), 750);
  EXPECT_EQ(capped.estimated_cost_nanos(), 2'000'000);
  EXPECT_THAT(capped.reasons(),
              Contains(Property(&v1::Reason::rule, "on_exhausted:cap_to_fit")));

  // The budget is now full to the nano: the next call is denied with the
  // policy's words and the budget's name, and nothing more is held.
  const v1::CheckResponse denied = Check(call);
  EXPECT_EQ(denied.verdict(), v1::VERDICT_DENY);
  EXPECT_TRUE(denied.reservation_id().empty());
  EXPECT_THAT(denied.reasons(),
              Contains(Property(&v1::Reason::rule, "budget:northstar-daily")));
  EXPECT_THAT(denied.reasons(), Contains(Property(&v1::Reason::message,
                                                  HasSubstr("ask on-call"))));
  v1::GetBudgetRequest get;
  get.set_name("northstar-daily");
  v1::GetBudgetResponse budget;
  BURSAR_ASSERT_OK(server_->GetBudget(get, &budget));
  EXPECT_EQ(budget.spent_nanos() + budget.held_nanos(), 1'000'000'000);
  EXPECT_THAT(
      denied.reasons(),
      Not(Contains(Property(&v1::Reason::rule, "on_exhausted:cap_to_fit"))));
}

}  // namespace
}  // namespace bursar::testing
