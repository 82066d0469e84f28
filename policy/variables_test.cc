// kpi.* and signal[...] in conditions, and the attribution section: how they
// load, what their mistakes say, and what they read.

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/call_plan.h"
#include "policy/kpi_view.h"
#include "policy/loader.h"
#include "policy/usage_view.h"

namespace bursar::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kHeader[] = R"yaml(apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: t }
pricing:
  big:   { input: "2.00", output: "8.00" }
  small: { input: "0.40", output: "1.60" }
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

const absl::Time kNow = absl::FromCivil(
    absl::CivilSecond(2026, 3, 16, 12, 0, 0), absl::UTCTimeZone());

// The budget "team" at 80% of its March amount, half-way through March.
class HalfMonth final : public UsageView {
 public:
  std::optional<BudgetUsage> Budget(absl::string_view name) const override {
    if (name != "team") return std::nullopt;
    BudgetUsage u;
    u.amount_nanos = 1000'000'000'000;  // $1000
    u.spent_nanos = 400'000'000'000;    // $400
    u.period_start = kNow - absl::Hours(24 * 15);
    u.period_end = kNow + absl::Hours(24 * 15);
    return u;
  }
};

class FixedKpis final : public KpiReader, public SignalView {
 public:
  bool Figures(absl::string_view budget, KpiWindow window, absl::Time,
               KpiFigures* out) const override {
    if (budget != "team") return false;
    *out = KpiFigures();
    if (window == KpiWindow::kLastHour) *out = last_hour;
    if (window == KpiWindow::kPreviousHour) *out = previous_hour;
    return true;
  }
  std::optional<double> Signal(absl::string_view name) const override {
    if (name == "golden-accuracy") return accuracy;
    return std::nullopt;
  }
  KpiFigures last_hour;
  KpiFigures previous_hour;
  double accuracy = 1.0;
};

// Whether the SLO "s" on budget "team" with condition `when` fires.
bool SloFires(const std::string& when, const FixedKpis& kpis) {
  const CompileResult compiled = Compile(absl::StrCat(R"yaml(spend_slos:
  - name: s
    budget: team
    when: )yaml",
                                                      when, R"yaml(
    then: { cap_output_tokens: 10 }
)yaml"));
  EXPECT_THAT(Errors(compiled), IsEmpty()) << when;
  if (compiled.policy == nullptr) return false;
  const HalfMonth usage;
  CallRequest call;
  call.model = "big";
  call.input_tokens = 10;
  call.max_output_tokens = 100;
  absl::StatusOr<CallPlan> plan =
      PlanCall(*compiled.policy, call, {&usage, kNow, &kpis, &kpis});
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() && plan->max_output_tokens == 10;
}

TEST(KpiVariablesTest, ReadTheWindowsOfTheRulesBudget) {
  FixedKpis kpis;
  kpis.last_hour.spend_nanos = 30'000'000'000;  // $30
  kpis.last_hour.requests = 100;
  kpis.last_hour.successes = 90;
  kpis.last_hour.failures = 5;
  kpis.last_hour.retries = 5;
  kpis.last_hour.input_tokens = 1000;
  kpis.last_hour.output_tokens = 500;
  kpis.last_hour.p95_latency = absl::Milliseconds(1500);
  kpis.previous_hour.spend_nanos = 20'000'000'000;
  EXPECT_TRUE(SloFires("kpi.spend_1h == $30", kpis));
  EXPECT_TRUE(SloFires("kpi.spend_prev_1h == $20", kpis));
  EXPECT_TRUE(SloFires("kpi.spend_1h > kpi.spend_prev_1h * 1.3", kpis));
  EXPECT_TRUE(SloFires("kpi.requests_1h == 100", kpis));
  EXPECT_TRUE(SloFires("kpi.cost_per_request_1h == $0.30", kpis));
  EXPECT_TRUE(SloFires("kpi.cost_per_success_1h == $0.333333333", kpis));
  EXPECT_TRUE(SloFires("kpi.retry_rate_1h == 5%", kpis));
  EXPECT_TRUE(SloFires("kpi.error_rate_1h == 10%", kpis));
  EXPECT_TRUE(SloFires("kpi.tokens_per_request_1h == 15", kpis));
  EXPECT_TRUE(SloFires("kpi.p95_latency_1h == 1500ms", kpis));
  EXPECT_FALSE(SloFires("kpi.quality_score_1h < 0.9", kpis))
      << "no scores: NaN, no comparison holds";
  kpis.last_hour.quality_reports = 4;
  kpis.last_hour.quality_micros_sum = 3'200'000;
  EXPECT_TRUE(SloFires("kpi.quality_score_1h == 0.8", kpis));
  // Windows without traffic read as zero, ratios too.
  EXPECT_TRUE(SloFires("kpi.requests_24h == 0", kpis));
  EXPECT_TRUE(SloFires("kpi.cost_per_request_prev_24h == $0", kpis));
  EXPECT_TRUE(SloFires("kpi.retry_rate_1h_last_week == 0", kpis));
  EXPECT_FALSE(SloFires("kpi.spend_1h > $30", kpis));
}

TEST(KpiVariablesTest, BurnRateAndProjectedSpendFollowThePeriodsPace) {
  const FixedKpis kpis;
  // Half the month gone, 40% spent: burn rate 0.8, $800 at month end.
  EXPECT_TRUE(SloFires("kpi.burn_rate > 0.79 && kpi.burn_rate < 0.81", kpis));
  EXPECT_TRUE(SloFires("kpi.projected_spend == $800", kpis));
}

TEST(KpiVariablesTest, SignalsReadTheLastValueAndNaNWhenNeverReported) {
  FixedKpis kpis;
  kpis.accuracy = 0.93;
  const CompileResult compiled = Compile(R"yaml(routes:
  - name: escalate
    when: signal["golden-accuracy"] < 95%
    route_to: big
  - name: never
    when: signal["unknown"] < 1 || signal["unknown"] >= 1
    route_to: big
)yaml");
  ASSERT_THAT(Errors(compiled), IsEmpty());
  CallRequest call;
  call.model = "small";
  call.input_tokens = 10;
  absl::StatusOr<CallPlan> plan =
      PlanCall(*compiled.policy, call, {nullptr, kNow, &kpis, &kpis});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->model, "big");
  kpis.accuracy = 0.97;
  plan = PlanCall(*compiled.policy, call, {nullptr, kNow, &kpis, &kpis});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->model, "small");  // and "never" did not fire on NaN
  // Without a signal source every signal is NaN.
  plan = PlanCall(*compiled.policy, call, {nullptr, kNow});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->model, "small");
}

TEST(KpiVariablesTest, MistakesAreNamed) {
  CompileResult result = Compile(R"yaml(routes:
  - name: r
    when: kpi.spend_1h > $1
    route_to: big
)yaml");
  ASSERT_EQ(result.policy, nullptr);
  EXPECT_THAT(Errors(result)[0],
              HasSubstr("kpi.* reads the rule's own budget and exists only "
                        "in spend_slos and alerts"));
  result = Compile(R"yaml(alerts:
  - name: a
    when: kpi.spend_7d > $1
)yaml");
  ASSERT_EQ(result.policy, nullptr);
  EXPECT_THAT(Errors(result)[0], HasSubstr("window one of 1h, prev_1h"));
  result = Compile(R"yaml(alerts:
  - name: a
    when: kpi.cost_per_request_1h > 0.5
)yaml");
  ASSERT_EQ(result.policy, nullptr);
  result = Compile(R"yaml(routes:
  - name: r
    when: signal.accuracy < 0.9
    route_to: big
)yaml");
  ASSERT_EQ(result.policy, nullptr);
  EXPECT_THAT(Errors(result)[0], HasSubstr(R"(signal["golden-accuracy"])"));
}

TEST(AttributionTest, LoadsSortedDimensionsAndTheBound) {
  const CompileResult result = Compile(R"yaml(attribution:
  dimensions: [user, team, feature]
  max_values_per_dimension: 50
)yaml");
  ASSERT_THAT(Errors(result), IsEmpty());
  const Attribution& a = result.policy->rules().attribution;
  EXPECT_THAT(a.dimensions, ElementsAre("feature", "team", "user"));
  EXPECT_EQ(a.max_values_per_dimension, 50);
  // Without the section: no dimensions, 1000 values.
  const CompileResult plain = Compile("");
  ASSERT_NE(plain.policy, nullptr);
  EXPECT_THAT(plain.policy->rules().attribution.dimensions, IsEmpty());
  EXPECT_EQ(plain.policy->rules().attribution.max_values_per_dimension, 1000);
}

TEST(AttributionTest, MistakesAreNamed) {
  struct Case {
    std::string section;
    std::string error;
  };
  const Case cases[] = {
      {"attribution: { dimensions: team }",
       "attribution.dimensions: expected "
       "a list of label keys"},
      {"attribution: { dimensions: [team, team] }",
       "attribution.dimensions[1]: \"team\" is listed twice"},
      {"attribution: { dimensions: [model] }",
       "\"model\" is always a dimension of usage"},
      {"attribution: { dimensions: [\"\"] }",
       "expected a label key of 1 to 64 bytes"},
      {"attribution: { max_values_per_dimension: 0 }",
       "attribution.max_values_per_dimension: expected a whole number of "
       "values from 1 to 100000"},
      {"attribution: { dims: [team] }", "unknown field"},
      {"attribution: { dimensions: [a, b, c, d, e, f, g, h, i, j, k, l, m, n, "
       "o, p, q] }",
       "17 dimensions; at most 16"},
  };
  for (const Case& c : cases) {
    const CompileResult result = Compile(c.section + "\n");
    EXPECT_EQ(result.policy, nullptr) << c.section;
    const std::vector<std::string> errors = Errors(result);
    ASSERT_FALSE(errors.empty()) << c.section;
    EXPECT_THAT(errors[0], HasSubstr(c.error)) << c.section;
  }
}

}  // namespace
}  // namespace bursar::policy
