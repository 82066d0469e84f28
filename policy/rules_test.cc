// The rule sections of the policy language: how they load (and how their
// mistakes are reported) and how PlanCall / NextExhaustedStep apply them.

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/call_plan.h"
#include "policy/loader.h"

namespace bursar::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kHeader[] = R"yaml(apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: t }
pricing:
  big:   { input: "2.00", output: "8.00" }
  small: { input: "0.40", output: "1.60" }
  tiny:  { input: "0.10", output: "0.40" }
)yaml";

CompileResult Compile(const std::string& rules) {
  return CompilePolicy({{"p.yaml", absl::StrCat(kHeader, rules)}});
}

std::vector<std::string> Errors(const CompileResult& result) {
  std::vector<std::string> errors;
  for (const Diagnostic& d : result.diagnostics) {
    if (d.severity == Diagnostic::Severity::kError) {
      errors.push_back(FormatDiagnostic(d));
    }
  }
  return errors;
}

class FixedUsage final : public UsageView {
 public:
  explicit FixedUsage(BudgetUsage usage) : usage_(usage) {}
  std::optional<BudgetUsage> Budget(absl::string_view name) const override {
    if (name != "daily") return std::nullopt;
    return usage_;
  }

 private:
  BudgetUsage usage_;
};

TEST(RulesLoadTest, ExpressionErrorsPointIntoTheExpression) {
  const CompileResult result = Compile(R"yaml(routes:
  - name: r
    when: request.labels.team == "x" && request.modle == "big"
    route_to: small
)yaml");
  ASSERT_EQ(result.policy, nullptr);
  const std::vector<std::string> errors = Errors(result);
  ASSERT_EQ(errors.size(), 1u);
  // "request.modle" starts at column 41 of line 10.
  EXPECT_THAT(errors[0], HasSubstr("p.yaml:10:41: routes[0].when: "));
  EXPECT_THAT(errors[0], HasSubstr("request.modle"));
}

TEST(RulesLoadTest, TypeMismatchIsALoadError) {
  const CompileResult result = Compile(R"yaml(spend_slos:
  - name: s
    budget: daily
    when: budget.used_ratio >= "high"
    then: { cap_output_tokens: 10 }
)yaml");
  ASSERT_EQ(result.policy, nullptr);
  EXPECT_THAT(Errors(result)[0], HasSubstr("spend_slos[0].when"));
}

TEST(RulesLoadTest, OwnBudgetOnlyWhereARuleHasOne) {
  const CompileResult result = Compile(R"yaml(deny:
  - name: d
    when: budget.used_ratio > 50%
)yaml");
  ASSERT_EQ(result.policy, nullptr);
  EXPECT_THAT(Errors(result)[0],
              HasSubstr(R"(elsewhere write budgets["name"].used_ratio)"));
}

TEST(RulesLoadTest, StructuralMistakesAreNamed) {
  const CompileResult result = Compile(R"yaml(routes:
  - name: same
    when: request.model == "big"
    route_to: gpt-9
    colour: blue
deny:
  - name: same
    when: "true"
on_exhausted: [ { downgrade: { big: big } }, explode ]
concurrency:
  - { name: pool, max_in_flight: 10, reserve: { critical: 11 } }
rate_limits:
  - { name: rl }
)yaml");
  ASSERT_EQ(result.policy, nullptr);
  const std::string all = absl::StrJoin(Errors(result), "\n");
  EXPECT_THAT(all, HasSubstr("routes[0].colour: unknown field"));
  EXPECT_THAT(all, HasSubstr("model \"gpt-9\" has no price"));
  EXPECT_THAT(all, HasSubstr("rule name \"same\" is already used at p.yaml:9"));
  EXPECT_THAT(all, HasSubstr("maps \"big\" to itself"));
  EXPECT_THAT(all, HasSubstr("on_exhausted[1]"));
  EXPECT_THAT(all, HasSubstr("reserves 11 slots but max_in_flight is 10"));
  EXPECT_THAT(all, HasSubstr("rate_limits[0]: expected at least one limit"));
}

TEST(RulesLoadTest, EveryConstructLoads) {
  const CompileResult result = Compile(R"yaml(timezone: America/New_York
routes:
  - { name: r, when: 'request.labels.task in ["triage", "intake"]', route_to: small }
spend_slos:
  - name: s
    budget: daily
    when: budget.used_ratio >= 90% && now.hour >= 15
    then: { downgrade: { big: small }, cap_output_tokens: 512 }
    escalate_after: 3
on_exhausted: [ { downgrade: { big: small } }, { cap_to_fit: { min_output_tokens: 64 } }, deny ]
deny:
  - { name: d, when: 'request.labels.team == "marketing" && request.model == "big"', message: no }
rate_limits:
  - { name: per-user, key: request.labels.user, requests_per_minute: 120, tokens_per_minute: 50000 }
concurrency:
  - { name: pool, when: 'request.model == "big"', max_in_flight: 200, reserve: { critical: 60 } }
alerts:
  - { name: a85, when: budget.used_ratio >= 85%, severity: warning }
)yaml");
  EXPECT_THAT(Errors(result), IsEmpty());
  ASSERT_NE(result.policy, nullptr);
  const PolicyRules& rules = result.policy->rules();
  EXPECT_EQ(rules.timezone_name, "America/New_York");
  EXPECT_EQ(rules.routes.size(), 1u);
  EXPECT_EQ(rules.spend_slos[0].escalate_after, 3);
  EXPECT_EQ(rules.on_exhausted.size(), 3u);
  EXPECT_EQ(rules.on_exhausted[1].min_output_tokens, 64);
  ASSERT_EQ(rules.rate_limits[0].windows.size(), 1u);
  EXPECT_EQ(rules.rate_limits[0].windows[0].window, absl::Minutes(1));
  EXPECT_EQ(rules.rate_limits[0].windows[0].max_requests, 120);
  EXPECT_EQ(rules.rate_limits[0].windows[0].max_tokens, 50000);
  EXPECT_EQ(rules.rate_limits[0].key.source, "request.labels.user");
  EXPECT_EQ(rules.concurrency[0].reserve.at("critical"), 60);
  EXPECT_EQ(rules.alerts[0].severity, "warning");
}

class PlanTest : public ::testing::Test {
 protected:
  absl::StatusOr<CallPlan> Plan(const std::string& rules,
                                absl::string_view model, int64_t max_output,
                                const UsageView* usage = nullptr,
                                absl::Time now = absl::UnixEpoch()) {
    compiled_ = Compile(rules);
    EXPECT_THAT(Errors(compiled_), IsEmpty());
    request_.model = model;
    request_.labels = labels_;
    request_.input_tokens = 1000;
    request_.max_output_tokens = max_output;
    return PlanCall(*compiled_.policy, request_, {usage, now});
  }

  CompileResult compiled_;
  CallRequest request_;
  std::vector<std::pair<absl::string_view, absl::string_view>> labels_ = {
      {"task", "triage"}, {"team", "marketing"}};
};

TEST_F(PlanTest, OnlyTheFirstMatchingRouteApplies) {
  auto plan = Plan(R"yaml(routes:
  - { name: first, when: 'request.labels.task == "triage"', route_to: small }
  - { name: second, when: 'request.labels.team == "marketing"', route_to: tiny }
)yaml",
                   "big", 100);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->model, "small");
  EXPECT_THAT(plan->fired, ElementsAre(Field(&FiredRule::rule, "route:first")));
}

TEST_F(PlanTest, TheSmallestCapWins) {
  const FixedUsage usage({.amount_nanos = 100, .spent_nanos = 95});
  const std::string rules = R"yaml(spend_slos:
  - { name: a, budget: daily, when: budget.used_ratio >= 90%, then: { cap_output_tokens: 300 } }
  - { name: b, budget: daily, when: budget.used_ratio >= 50%, then: { cap_output_tokens: 500 } }
)yaml";
  auto plan = Plan(rules, "big", 2000, &usage);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->max_output_tokens, 300);
  auto smaller = Plan(rules, "big", 200, &usage);
  EXPECT_EQ(smaller->max_output_tokens, 200);  // the caller's own is smaller
  EXPECT_THAT(smaller->fired, IsEmpty());
}

TEST_F(PlanTest, SloReadsTheClockInThePolicysZone) {
  const FixedUsage usage({.amount_nanos = 100, .spent_nanos = 95});
  const std::string rules = R"yaml(timezone: America/New_York
spend_slos:
  - { name: s, budget: daily, when: now.hour >= 15, then: { downgrade: { big: small } } }
)yaml";
  const absl::TimeZone ny = [] {
    absl::TimeZone tz;
    absl::LoadTimeZone("America/New_York", &tz);
    return tz;
  }();
  auto before =
      Plan(rules, "big", 10, &usage,
           absl::FromCivil(absl::CivilSecond(2026, 3, 10, 14, 59, 0), ny));
  EXPECT_EQ(before->model, "big");
  auto after =
      Plan(rules, "big", 10, &usage,
           absl::FromCivil(absl::CivilSecond(2026, 3, 10, 15, 0, 0), ny));
  EXPECT_EQ(after->model, "small");
}

TEST_F(PlanTest, DenyWinsOverEverything) {
  auto plan = Plan(R"yaml(routes:
  - { name: r, when: 'request.labels.task == "triage"', route_to: small }
deny:
  - { name: no-marketing, when: 'request.labels.team == "marketing"', message: "not you" }
)yaml",
                   "big", 10);
  ASSERT_TRUE(plan.ok());
  EXPECT_FALSE(plan->allowed);
  EXPECT_EQ(plan->deny_rule, "deny:no-marketing");
  EXPECT_EQ(plan->deny_message, "not you");
}

TEST_F(PlanTest, CapToFitNeverOvershoots) {
  auto plan =
      Plan("on_exhausted: [ { cap_to_fit: { min_output_tokens: 10 } } ]\n",
           "big", 1000);
  ASSERT_TRUE(plan.ok());
  // 1000 input tokens at $2/1M cost $0.002; $0.0025 leaves room for
  // exactly 62 output tokens at $8/1M (62.5 rounded down).
  ASSERT_TRUE(
      NextExhaustedStep(*compiled_.policy, request_, 2'500'000, &*plan));
  EXPECT_EQ(plan->max_output_tokens, 62);
  EXPECT_LE(plan->estimated_cost_nanos, 2'500'000);
  EXPECT_EQ(plan->estimated_cost_nanos, 2'496'000);
  // Nothing is left to try: the next shortfall ends in a denial.
  EXPECT_FALSE(NextExhaustedStep(*compiled_.policy, request_, 100, &*plan));
  EXPECT_FALSE(plan->allowed);
}

TEST_F(PlanTest, CapToFitRefusesUselessAnswers) {
  auto plan =
      Plan("on_exhausted: [ { cap_to_fit: { min_output_tokens: 100 } } ]\n",
           "big", 1000);
  EXPECT_FALSE(
      NextExhaustedStep(*compiled_.policy, request_, 2'500'000, &*plan));
  EXPECT_EQ(plan->max_output_tokens, 1000);
}

}  // namespace
}  // namespace bursar::policy
