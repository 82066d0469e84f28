// Org, team and per-user budgets nest by themselves: a request must fit every
// budget it matches, the tightest one decides, and a denial reserves nothing
// anywhere.

#include <cstdint>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

// gpt-4.1, 1,000 in / 500 out: 1,000 × 2,000 + 500 × 8,000 nanos = $0.006.
constexpr int64_t kEstimateNanos = 6'000'000;
constexpr int64_t kOrgNanos = 1'000'000'000;  // $1
constexpr int64_t kTeamNanos = 30'000'000;    // $0.03: five calls
constexpr int64_t kUserNanos = 20'000'000;    // $0.02: three calls

v1::CheckRequest CallAs(const std::string& team, const std::string& user) {
  return MakeCheck("gpt-4.1", 1'000, 500, {{"team", team}, {"user", user}});
}

class NestedBudgetsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
    SetBudget(MakeBudget("org", {}, v1::PERIOD_NONE, kOrgNanos));
    SetBudget(MakeBudget("team-search", {{"team", "search"}}, v1::PERIOD_NONE,
                         kTeamNanos));
    SetBudget(MakeBudget("search-user", {{"team", "search"}}, v1::PERIOD_NONE,
                         kUserNanos, "", "user"));
  }

  void SetBudget(const v1::Budget& budget) {
    v1::SetBudgetRequest request;
    *request.mutable_budget() = budget;
    v1::SetBudgetResponse response;
    BURSAR_ASSERT_OK(server_->SetBudget(request, &response));
  }

  v1::GetBudgetResponse Budget(const std::string& name,
                               const std::string& instance = "") {
    v1::GetBudgetRequest request;
    request.set_name(name);
    request.set_instance(instance);
    v1::GetBudgetResponse response;
    BURSAR_EXPECT_OK(server_->GetBudget(request, &response));
    return response;
  }

  v1::CheckResponse Check(const v1::CheckRequest& request) {
    v1::CheckResponse response;
    BURSAR_EXPECT_OK(server_->Check(request, &response));
    return response;
  }

  // Held amounts of every budget (and the users' instances).
  std::string Holds() {
    std::string out;
    for (const char* name : {"org", "team-search"}) {
      const v1::GetBudgetResponse b = Budget(name);
      out += std::string(name) + " spent=" + std::to_string(b.spent_nanos()) +
             " held=" + std::to_string(b.held_nanos()) + "; ";
    }
    for (const char* user : {"alice", "bob", "carol"}) {
      const v1::GetBudgetResponse b = Budget("search-user", user);
      out += std::string(user) + " spent=" + std::to_string(b.spent_nanos()) +
             " held=" + std::to_string(b.held_nanos()) + "; ";
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<BursardProcess> server_;
};

TEST_F(NestedBudgetsTest, EveryMatchingBudgetIsReservedAndReported) {
  const v1::CheckResponse allowed = Check(CallAs("search", "alice"));
  ASSERT_EQ(allowed.verdict(), v1::VERDICT_ALLOW);
  ASSERT_THAT(allowed.budgets(), SizeIs(3));
  for (const v1::BudgetStanding& standing : allowed.budgets()) {
    EXPECT_EQ(standing.held_nanos(), kEstimateNanos) << standing.budget();
    EXPECT_EQ(standing.instance(),
              standing.budget() == "search-user" ? "alice" : "")
        << standing.budget();
  }
  EXPECT_EQ(Budget("org").held_nanos(), kEstimateNanos);
  EXPECT_EQ(Budget("team-search").held_nanos(), kEstimateNanos);
  EXPECT_EQ(Budget("search-user", "alice").held_nanos(), kEstimateNanos);

  v1::ReportResponse report;
  BURSAR_ASSERT_OK(server_->Report(
      MakeReport(allowed.reservation_id(), 1'000, 0, 100), &report));
  for (const char* name : {"org", "team-search"}) {
    EXPECT_EQ(Budget(name).spent_nanos(), report.cost_nanos()) << name;
    EXPECT_EQ(Budget(name).held_nanos(), 0) << name;
  }
  EXPECT_EQ(Budget("search-user", "alice").spent_nanos(), report.cost_nanos());

  // Without a user label the per-user budget does not apply.
  const v1::CheckResponse anonymous =
      Check(MakeCheck("gpt-4.1", 1'000, 500, {{"team", "search"}}));
  ASSERT_EQ(anonymous.verdict(), v1::VERDICT_ALLOW);
  EXPECT_THAT(anonymous.budgets(), SizeIs(2));
  EXPECT_EQ(Budget("team-search").held_nanos(), kEstimateNanos);
  EXPECT_EQ(Budget("search-user", "alice").held_nanos(), 0);

  // Another team's request matches only the org budget.
  const v1::CheckResponse ads = Check(CallAs("ads", "alice"));
  ASSERT_EQ(ads.verdict(), v1::VERDICT_ALLOW);
  ASSERT_THAT(ads.budgets(), SizeIs(1));
  EXPECT_EQ(ads.budgets(0).budget(), "org");
}

TEST_F(NestedBudgetsTest, TheTightestBudgetDecidesAllOrNothing) {
  // alice fills her own $0.02 with three calls (team: 3 of 5 used).
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Check(CallAs("search", "alice")).verdict(), v1::VERDICT_ALLOW);
  }
  const std::string before = Holds();
  const v1::CheckResponse user_denied = Check(CallAs("search", "alice"));
  EXPECT_EQ(user_denied.verdict(), v1::VERDICT_DENY);
  EXPECT_TRUE(user_denied.reservation_id().empty());
  ASSERT_THAT(user_denied.reasons(), SizeIs(1));
  EXPECT_EQ(user_denied.reasons(0).rule(), "budget:search-user");
  EXPECT_THAT(user_denied.reasons(0).message(),
              HasSubstr("budget \"search-user\" for \"alice\" has $0.002 of "
                        "$0.02 left"));
  EXPECT_THAT(user_denied.reasons(0).message(), HasSubstr("$0.006"));
  EXPECT_EQ(Holds(), before) << "a denial must not reserve anything";

  // bob's instance of the per-user budget is untouched by alice's spend.
  const v1::GetBudgetResponse bob = Budget("search-user", "bob");
  EXPECT_EQ(bob.spent_nanos(), 0);
  EXPECT_EQ(bob.held_nanos(), 0);
  ASSERT_EQ(Check(CallAs("search", "bob")).verdict(), v1::VERDICT_ALLOW);
  ASSERT_EQ(Check(CallAs("search", "bob")).verdict(), v1::VERDICT_ALLOW);

  // Now the team's $0.03 is fully held: bob has room of his own, but the
  // team budget is the tightest and says no.
  const std::string team_full = Holds();
  const v1::CheckResponse team_denied = Check(CallAs("search", "bob"));
  EXPECT_EQ(team_denied.verdict(), v1::VERDICT_DENY);
  ASSERT_THAT(team_denied.reasons(), SizeIs(1));
  EXPECT_EQ(team_denied.reasons(0).rule(), "budget:team-search");
  EXPECT_THAT(team_denied.reasons(0).message(),
              HasSubstr("budget \"team-search\" has $0.00 of $0.03 left"));
  EXPECT_THAT(team_denied.reasons(0).message(), Not(HasSubstr("bob")));
  EXPECT_EQ(Holds(), team_full) << "a denial must not reserve anything";

  // Where both the user's and the team's budget are short, both are named,
  // the tightest first.
  const v1::CheckResponse both = Check(CallAs("search", "alice"));
  EXPECT_EQ(both.verdict(), v1::VERDICT_DENY);
  ASSERT_THAT(both.reasons(), SizeIs(2));
  EXPECT_EQ(both.reasons(0).rule(), "budget:team-search");
  EXPECT_EQ(both.reasons(1).rule(), "budget:search-user");
  EXPECT_EQ(Holds(), team_full);

  // The org budget still has room for everyone else.
  EXPECT_EQ(Check(CallAs("ads", "carol")).verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(Budget("org").held_nanos(), 6 * kEstimateNanos);
}

TEST_F(NestedBudgetsTest, DryRunReservesNothing) {
  v1::CheckRequest dry = CallAs("search", "alice");
  dry.set_dry_run(true);
  for (int i = 0; i < 5; ++i) {
    const v1::CheckResponse answer = Check(dry);
    EXPECT_EQ(answer.verdict(), v1::VERDICT_ALLOW);
    EXPECT_TRUE(answer.reservation_id().empty());
    EXPECT_EQ(answer.estimated_cost_nanos(), kEstimateNanos);
  }
  EXPECT_EQ(Budget("org").held_nanos(), 0);
  EXPECT_EQ(Budget("team-search").held_nanos(), 0);
  EXPECT_EQ(Budget("search-user", "alice").held_nanos(), 0);

  // Dry runs tell the truth about a denial too, still reserving nothing.
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Check(CallAs("search", "alice")).verdict(), v1::VERDICT_ALLOW);
  }
  const std::string before = Holds();
  const v1::CheckResponse denied = Check(dry);
  EXPECT_EQ(denied.verdict(), v1::VERDICT_DENY);
  ASSERT_THAT(denied.reasons(), SizeIs(1));
  EXPECT_EQ(denied.reasons(0).rule(), "budget:search-user");
  EXPECT_EQ(Holds(), before);
}

TEST_F(NestedBudgetsTest, ModelAndProviderArePseudoLabels) {
  SetBudget(MakeBudget("gpt41-only", {{"model", "gpt-4.1"}}, v1::PERIOD_NONE,
                       kOrgNanos));
  SetBudget(MakeBudget("anthropic", {{"provider", "anthropic"}},
                       v1::PERIOD_NONE, kOrgNanos));
  SetBudget(
      MakeBudget("azure", {{"provider", "azure"}}, v1::PERIOD_NONE, kOrgNanos));

  // No labels at all: the model and the catalog's provider still select.
  ASSERT_EQ(Check(MakeCheck("gpt-4.1", 1'000, 500)).verdict(),
            v1::VERDICT_ALLOW);
  ASSERT_EQ(Check(MakeCheck("gpt-4.1-mini", 1'000, 500)).verdict(),
            v1::VERDICT_ALLOW);
  // claude-3-5-haiku: 1,000 × 800 + 500 × 4,000 nanos.
  ASSERT_EQ(Check(MakeCheck("claude-3-5-haiku", 1'000, 500)).verdict(),
            v1::VERDICT_ALLOW);
  EXPECT_EQ(Budget("gpt41-only").held_nanos(), kEstimateNanos);
  EXPECT_EQ(Budget("anthropic").held_nanos(), 2'800'000);
  EXPECT_EQ(Budget("org").held_nanos(), kEstimateNanos + 1'200'000 + 2'800'000);

  // The request's provider field (the gateway routes to Azure) wins over
  // the catalog.
  v1::CheckRequest via_azure = MakeCheck("gpt-4.1", 1'000, 500);
  via_azure.set_provider("azure");
  ASSERT_EQ(Check(via_azure).verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(Budget("azure").held_nanos(), kEstimateNanos);
  EXPECT_EQ(Budget("gpt41-only").held_nanos(), 2 * kEstimateNanos);
}

TEST_F(NestedBudgetsTest, ACallerLabelCannotHideTheRealModel) {
  SetBudget(MakeBudget("gpt41-only", {{"model", "gpt-4.1"}}, v1::PERIOD_NONE,
                       kEstimateNanos));
  ASSERT_EQ(Check(MakeCheck("gpt-4.1", 1'000, 500)).verdict(),
            v1::VERDICT_ALLOW);
  // The gpt-4.1 budget is full; labelling the call "model=gpt-4.1-mini"
  // while asking for gpt-4.1 must not get around it.
  const v1::CheckResponse disguised =
      Check(MakeCheck("gpt-4.1", 1'000, 500, {{"model", "gpt-4.1-mini"}}));
  EXPECT_EQ(disguised.verdict(), v1::VERDICT_DENY);
  ASSERT_THAT(disguised.reasons(), SizeIs(1));
  EXPECT_EQ(disguised.reasons(0).rule(), "budget:gpt41-only");
}

TEST_F(NestedBudgetsTest, BudgetChangesTakeEffectAtOnce) {
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(Check(CallAs("search", "alice")).verdict(), v1::VERDICT_ALLOW);
  }
  // Finance cuts the team's budget below what is already held.
  SetBudget(MakeBudget("team-search", {{"team", "search"}}, v1::PERIOD_NONE,
                       kEstimateNanos));
  const v1::CheckResponse cut = Check(CallAs("search", "bob"));
  EXPECT_EQ(cut.verdict(), v1::VERDICT_DENY);
  ASSERT_THAT(cut.reasons(), SizeIs(1));
  EXPECT_THAT(cut.reasons(0).message(),
              HasSubstr("budget \"team-search\" has $0.00 of $0.006 left"));
  // The holds are kept; only new calls are refused.
  EXPECT_EQ(Budget("team-search").held_nanos(), 2 * kEstimateNanos);

  // Deleting the team budget lets the team's calls through again, and the
  // reservations made under it still settle.
  v1::DeleteBudgetRequest del;
  del.set_name("team-search");
  del.set_actor("finance");
  v1::DeleteBudgetResponse del_response;
  grpc::ClientContext context;
  BURSAR_ASSERT_OK(server_->admin().DeleteBudget(&context, del, &del_response));
  const v1::CheckResponse after_delete = Check(CallAs("search", "bob"));
  EXPECT_EQ(after_delete.verdict(), v1::VERDICT_ALLOW);
  v1::ReportResponse report;
  BURSAR_ASSERT_OK(server_->Report(
      MakeReport(after_delete.reservation_id(), 1'000, 0, 0), &report));
  EXPECT_EQ(report.cost_nanos(), 2'000'000);
  EXPECT_EQ(Budget("org").spent_nanos(), 2'000'000);
  EXPECT_EQ(Budget("org").held_nanos(), 2 * kEstimateNanos);
}

}  // namespace
}  // namespace bursar::testing
