// Variable slots (policy/variables.h, docs/decisions/026-variable-slots.md):
// conditions compiled against a policy's layout read request.*, now.* and
// labels from a VariableSlots table filled once per call. The table must
// give what PolicyActivation::Get gives, and PlanCall must refresh it
// whenever the plan changes the facts a later rule reads.

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/call_plan.h"
#include "policy/expr/expr.h"
#include "policy/loader.h"
#include "policy/usage_view.h"
#include "policy/variables.h"

namespace bursar::policy {
namespace {

using ::testing::ElementsAre;

// 2025-06-03 was a Tuesday.
const absl::CivilSecond kLocalNow(2025, 6, 3, 16, 30, 0);

struct Facts {
  std::vector<std::pair<absl::string_view, absl::string_view>> labels = {
      {"k0", "v0"}, {"k1", "v1"}, {"k2", "v2"},       {"k3", "v3"},
      {"k4", "v4"}, {"k5", "v5"}, {"k6", "v6"},       {"k7", "v7"},
      {"k8", "v8"}, {"k9", "v9"}, {"team", "search"}, {"x-user", "ada"}};
  RequestFacts request;

  Facts() {
    request.model = "gpt-4.1";
    request.provider = "openai";
    request.priority = "critical";
    request.labels = labels;
    request.input_tokens = 1200;
    request.max_output_tokens = 900;
    request.estimated_cost_nanos = 500'000'000;  // $0.50
    request.attempt = 2;
  }
};

// Compiles `source` against `layout`; fails the test if it does not.
std::unique_ptr<const expr::Program> MustCompile(absl::string_view source,
                                                 VariableSlotLayout* layout) {
  const PolicySchema schema(VariableScope{}, layout);
  expr::CompileResult result = expr::Compile(source, schema);
  EXPECT_TRUE(result.errors.empty())
      << source << ": " << result.errors.front().message;
  return std::move(result.program);
}

TEST(VariableSlotsTest, EverySlotReadsWhatGetReads) {
  // True for Facts and kLocalNow; each variable that has a slot is read.
  const std::vector<std::string> conditions = {
      "request.model == \"gpt-4.1\"",
      "request.provider == \"openai\"",
      "request.priority == \"critical\"",
      "request.input_tokens == 1200",
      "request.max_output_tokens == 900",
      "request.attempt == 2",
      "request.estimated_cost == $0.50",
      "now.hour == 16",
      "now.minute == 30",
      "now.day_of_month == 3",
      "now.month == 6",
      "now.weekday == \"tuesday\"",
      "request.labels.team == \"search\"",
      "request.labels[\"x-user\"] == \"ada\"",
      "request.labels.missing == \"\"",
      "request.model.startsWith(\"gpt-\") && request.labels.team in "
      "[\"ads\", \"search\"]",
  };
  VariableSlotLayout layout;
  std::vector<std::unique_ptr<const expr::Program>> programs;
  for (const std::string& source : conditions) {
    programs.push_back(MustCompile(source, &layout));
  }
  EXPECT_THAT(layout.label_keys, ElementsAre("team", "x-user", "missing"));
  EXPECT_TRUE(layout.reads_now);
  EXPECT_TRUE(layout.reads_weekday);

  const Facts facts;
  const absl::Time now = absl::FromCivil(kLocalNow, absl::UTCTimeZone());
  VariableSlots slots;
  slots.Fill(facts.request, kLocalNow, layout);
  const PolicyActivation with_slots(&facts.request, nullptr, now, kLocalNow,
                                    nullptr, nullptr, &slots);
  const PolicyActivation through_get(&facts.request, nullptr, now, kLocalNow);
  for (size_t i = 0; i < programs.size(); ++i) {
    if (programs[i] == nullptr) continue;
    EXPECT_TRUE(programs[i]->EvalBool(with_slots)) << conditions[i];
    EXPECT_TRUE(programs[i]->EvalBool(through_get)) << conditions[i];
  }

  // A slot holds the value of its own variable: with the facts changed,
  // the same conditions fail through both paths.
  Facts other;
  other.request.model = "o3";
  other.request.input_tokens = 1;
  other.request.attempt = 1;
  other.labels[10].second = "ads";
  VariableSlots other_slots;
  other_slots.Fill(other.request, kLocalNow, layout);
  const PolicyActivation other_view(&other.request, nullptr, now, kLocalNow,
                                    nullptr, nullptr, &other_slots);
  EXPECT_FALSE(programs[0]->EvalBool(other_view));
  EXPECT_FALSE(programs[3]->EvalBool(other_view));
  EXPECT_FALSE(programs[5]->EvalBool(other_view));
  EXPECT_FALSE(programs[12]->EvalBool(other_view));
}

TEST(VariableSlotsTest, RefreshTakesTheNewModelCapAndEstimate) {
  VariableSlotLayout layout;
  auto program = MustCompile(
      "request.model == \"gpt-4.1-mini\" && request.max_output_tokens == 500 "
      "&& request.estimated_cost == $0.25",
      &layout);
  ASSERT_NE(program, nullptr);
  Facts facts;
  const absl::Time now = absl::FromCivil(kLocalNow, absl::UTCTimeZone());
  VariableSlots slots;
  slots.Fill(facts.request, kLocalNow, layout);
  const PolicyActivation view(&facts.request, nullptr, now, kLocalNow, nullptr,
                              nullptr, &slots);
  EXPECT_FALSE(program->EvalBool(view));
  facts.request.model = "gpt-4.1-mini";
  facts.request.max_output_tokens = 500;
  facts.request.estimated_cost_nanos = 250'000'000;
  EXPECT_FALSE(program->EvalBool(view));  // the table still has the old ones
  slots.Refresh(facts.request);
  EXPECT_TRUE(program->EvalBool(view));
}

TEST(VariableSlotsTest, LabelsPastTheSlotsAreReadThroughGet) {
  VariableSlotLayout layout;
  std::vector<std::unique_ptr<const expr::Program>> programs;
  for (int i = 0; i < 10; ++i) {
    programs.push_back(MustCompile(
        absl::StrCat("request.labels.k", i, " == \"v", i, "\""), &layout));
  }
  ASSERT_EQ(layout.label_keys.size(), static_cast<size_t>(kMaxLabelSlots));
  EXPECT_FALSE(layout.reads_now);
  const Facts facts;
  const absl::Time now = absl::FromCivil(kLocalNow, absl::UTCTimeZone());
  VariableSlots slots;
  slots.Fill(facts.request, absl::CivilSecond(), layout);
  const PolicyActivation view(&facts.request, nullptr, now, absl::CivilSecond(),
                              nullptr, nullptr, &slots);
  for (int i = 0; i < 10; ++i) {
    ASSERT_NE(programs[i], nullptr);
    EXPECT_TRUE(programs[i]->EvalBool(view)) << "k" << i;
  }
}

TEST(VariableSlotsTest, SchemaWithoutALayoutGivesNoSlots) {
  // A slot table with wrong values must not matter to such a program.
  auto program = MustCompile("request.model == \"gpt-4.1\"", nullptr);
  ASSERT_NE(program, nullptr);
  const Facts facts;
  Facts wrong;
  wrong.request.model = "o3";
  VariableSlots slots;
  slots.Fill(wrong.request, kLocalNow, VariableSlotLayout());
  const PolicyActivation view(&facts.request, nullptr, absl::UnixEpoch(),
                              kLocalNow, nullptr, nullptr, &slots);
  EXPECT_TRUE(program->EvalBool(view));
}

constexpr char kPolicy[] = R"yaml(apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: slots }
timezone: America/New_York
pricing:
  gpt-4.1:      { input: "2.00", output: "8.00" }
  gpt-4.1-mini: { input: "0.40", output: "1.60" }
  gpt-4.1-nano: { input: "0.10", output: "0.40" }
defaults: { max_output_tokens: 4096, unknown_model: reject }
routes:
  - name: triage
    when: request.labels.task == "triage"
    route_to: gpt-4.1-mini
spend_slos:
  # Fires first: gpt-4.1-mini (after the route) to nano, output capped at 500.
  - name: first
    budget: team
    when: request.model == "gpt-4.1-mini" && budget.used_ratio >= 50%
    then: { downgrade: { gpt-4.1-mini: gpt-4.1-nano }, cap_output_tokens: 500 }
  # Holds only if it sees what the first did: the model, the cap and the
  # estimate after it (1000 input + 500 output tokens of nano).
  - name: second
    budget: team
    when: >-
      request.model == "gpt-4.1-nano" && request.max_output_tokens == 500 &&
      request.estimated_cost == $0.0003
    then: { cap_output_tokens: 400 }
deny:
  # Holds only with the final model and cap (after both SLOs), late enough.
  - name: final
    when: >-
      request.model == "gpt-4.1-nano" && request.max_output_tokens == 400 &&
      request.labels.team == "search" && now.hour >= 15
)yaml";

class OneBudget final : public UsageView {
 public:
  std::optional<BudgetUsage> Budget(absl::string_view name) const override {
    if (name != "team") return std::nullopt;
    BudgetUsage usage;
    usage.amount_nanos = 100;
    usage.spent_nanos = 60;
    return usage;
  }
};

TEST(VariableSlotsTest, LaterRulesSeeWhatEarlierRulesChanged) {
  CompileResult compiled = CompilePolicy({{"p.yaml", kPolicy}});
  ASSERT_NE(compiled.policy, nullptr)
      << FormatDiagnostic(compiled.diagnostics.front());
  const std::vector<std::pair<absl::string_view, absl::string_view>> labels = {
      {"task", "triage"}, {"team", "search"}};
  CallRequest request;
  request.model = "gpt-4.1";
  request.labels = labels;
  request.input_tokens = 1000;
  request.max_output_tokens = 1000;
  const OneBudget usage;
  // 16:30 in New York.
  DecisionContext context;
  context.usage = &usage;
  context.now = absl::FromCivil(absl::CivilSecond(2025, 6, 3, 20, 30, 0),
                                absl::UTCTimeZone());
  absl::StatusOr<CallPlan> plan = PlanCall(*compiled.policy, request, context);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->fired.size(), 3u);
  EXPECT_EQ(plan->fired[0].rule, "route:triage");
  EXPECT_EQ(plan->fired[1].rule, "slo:first");
  EXPECT_EQ(plan->fired[2].rule, "slo:second");
  EXPECT_FALSE(plan->allowed);
  EXPECT_EQ(plan->deny_rule, "deny:final");

  // 14:30 in New York: the deny rule's now.hour >= 15 no longer holds.
  context.now -= absl::Hours(2);
  plan = PlanCall(*compiled.policy, request, context);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->allowed);
  EXPECT_EQ(plan->model, "gpt-4.1-nano");
  EXPECT_EQ(plan->max_output_tokens, 400);
}

}  // namespace
}  // namespace bursar::policy
