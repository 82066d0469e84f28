#include "policy/call_plan.h"

#include <limits>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/compiled_policy.h"
#include "policy/loader.h"
#include "policy/pricing.h"

namespace bursar::policy {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

ModelPrice Price(int64_t input, int64_t cached_input, int64_t output) {
  ModelPrice price;
  price.input_nanos_per_mtok = input;
  price.cached_input_nanos_per_mtok = cached_input;
  price.output_nanos_per_mtok = output;
  price.provider = "openai";
  return price;
}

CompiledPolicy MakePolicy(
    UnknownModelAction unknown_model = UnknownModelAction::kReject) {
  absl::flat_hash_map<std::string, ModelPrice> prices;
  prices["gpt-4.1"] = Price(2'000'000'000, 500'000'000, 8'000'000'000);
  prices["gpt-4.1-mini"] = Price(400'000'000, 100'000'000, 1'600'000'000);
  prices["gpt-4.1-nano"] = Price(100'000'000, 25'000'000, 400'000'000);
  prices["gpt-4o"] = Price(2'500'000'000, 1'250'000'000, 10'000'000'000);
  prices["gpt-4o-mini"] = Price(150'000'000, 75'000'000, 600'000'000);
  prices["o3"] = Price(2'000'000'000, 500'000'000, 8'000'000'000);
  prices["o4-mini"] = Price(1'100'000'000, 275'000'000, 4'400'000'000);
  Defaults defaults;
  defaults.max_output_tokens = 4096;
  defaults.unknown_model = unknown_model;
  return CompiledPolicy("0123456789abcdef", std::move(prices), defaults);
}

CallRequest Request(absl::string_view model, int64_t input_tokens,
                    int64_t max_output_tokens) {
  CallRequest request;
  request.model = model;
  request.input_tokens = input_tokens;
  request.max_output_tokens = max_output_tokens;
  return request;
}

TEST(PlanCallTest, EstimatesInputPlusMaxOutput) {
  const CompiledPolicy policy = MakePolicy();
  absl::StatusOr<CallPlan> plan =
      PlanCall(policy, Request("gpt-4.1", 1200, 2000));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->allowed);
  EXPECT_EQ(plan->model, "gpt-4.1");
  ASSERT_NE(plan->price, nullptr);
  EXPECT_EQ(plan->price, policy.FindPrice("gpt-4.1"));
  EXPECT_EQ(plan->price->provider, "openai");
  EXPECT_EQ(plan->max_output_tokens, 2000);
  EXPECT_EQ(plan->estimated_cost_nanos, 18'400'000);
}

TEST(PlanCallTest, NoMaxOutputTokensUsesThePolicyDefault) {
  const CompiledPolicy policy = MakePolicy();
  absl::StatusOr<CallPlan> plan = PlanCall(policy, Request("gpt-4.1", 1000, 0));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->max_output_tokens, 4096);
  // 1,000 * 2,000 + 4,096 * 8,000 nanos.
  EXPECT_EQ(plan->estimated_cost_nanos, 2'000'000 + 32'768'000);
}

TEST(PlanCallTest, EstimateAssumesNoCacheDiscountAndRoundsUp) {
  const CompiledPolicy policy = MakePolicy();
  // gpt-4o-mini input is 150 nanos per token, never the 75 of cached input.
  absl::StatusOr<CallPlan> plan =
      PlanCall(policy, Request("gpt-4o-mini", 1, 1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->estimated_cost_nanos, 150 + 600);
  // gpt-4.1-nano cached pricing aside, 1 input token costs 100 nanos.
  plan = PlanCall(policy, Request("gpt-4.1-nano", 1, 1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->estimated_cost_nanos, 100 + 400);
}

TEST(PlanCallTest, EmptyModelIsInvalid) {
  absl::StatusOr<CallPlan> plan = PlanCall(MakePolicy(), Request("", 10, 10));
  EXPECT_EQ(plan.status(),
            absl::InvalidArgumentError("model: must not be empty"));
}

TEST(PlanCallTest, TokenCountsOutOfRangeNameTheField) {
  const CompiledPolicy policy = MakePolicy();
  struct Case {
    int64_t input_tokens;
    int64_t max_output_tokens;
    const char* field;
  };
  for (const Case& c :
       {Case{-1, 10, "input_tokens: "},
        Case{kMaxTokensPerCall + 1, 10, "input_tokens: "},
        Case{10, -1, "max_output_tokens: "},
        Case{10, kMaxTokensPerCall + 1, "max_output_tokens: "}}) {
    absl::StatusOr<CallPlan> plan = PlanCall(
        policy, Request("gpt-4.1", c.input_tokens, c.max_output_tokens));
    EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(plan.status().message()), StartsWith(c.field));
  }
  // The bounds themselves are fine.
  absl::StatusOr<CallPlan> plan = PlanCall(
      policy, Request("gpt-4.1", kMaxTokensPerCall, kMaxTokensPerCall));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->estimated_cost_nanos, kMaxTokensPerCall * (2000 + 8000));
}

TEST(PlanCallTest, UnknownModelIsRejectedWithSomePricedModels) {
  absl::StatusOr<CallPlan> plan =
      PlanCall(MakePolicy(), Request("gpt-5", 10, 10));
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(plan.status().message(),
            "model: \"gpt-5\" has no price in policy 0123456789abcdef; priced "
            "models include gpt-4.1, gpt-4.1-mini, gpt-4.1-nano, gpt-4o, "
            "gpt-4o-mini (2 more)");
}

TEST(PlanCallTest, UnknownModelIsDeniedUnderDeny) {
  absl::StatusOr<CallPlan> plan =
      PlanCall(MakePolicy(UnknownModelAction::kDeny), Request("foo", 10, 0));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->allowed);
  EXPECT_EQ(plan->deny_rule, "unknown-model");
  EXPECT_THAT(plan->deny_message, HasSubstr("\"foo\" has no price"));
  EXPECT_EQ(plan->model, "foo");
  EXPECT_EQ(plan->price, nullptr);
  EXPECT_EQ(plan->estimated_cost_nanos, 0);
}

TEST(PlanCallTest, ModelNamesAreExact) {
  // No case folding or prefix matching: a near miss is an unknown model.
  EXPECT_FALSE(PlanCall(MakePolicy(), Request("GPT-4.1", 1, 1)).ok());
  EXPECT_FALSE(PlanCall(MakePolicy(), Request("gpt-4.1 ", 1, 1)).ok());
}

TEST(PlanCallTest, CostAboveInt64IsOutOfRange) {
  absl::flat_hash_map<std::string, ModelPrice> prices;
  prices["absurd"] = Price(0, 0, std::numeric_limits<int64_t>::max());
  const CompiledPolicy policy("feedfacefeedface", std::move(prices),
                              Defaults());
  EXPECT_EQ(PlanCall(policy, Request("absurd", 0, 1'000'001)).status().code(),
            absl::StatusCode::kOutOfRange);
}

// PlanCall keeps the figures of each fired rule; message() words them as
// Check's reasons always read.
TEST(FiredRuleTest, MessagesSayWhatEachRuleDid) {
  const CompileResult compiled = CompilePolicy({{"p.yaml", R"yaml(
apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: t }
pricing:
  big:   { input: "2.00", output: "8.00" }
  small: { input: "0.40", output: "1.60" }
  tiny:  { input: "0.10", output: "0.40" }
routes:
  - { name: to-small, when: 'request.labels.task == "triage"', route_to: small }
spend_slos:
  - name: s
    budget: daily
    when: budget.used_ratio >= 90%
    then: { downgrade: { small: tiny }, cap_output_tokens: 500 }
)yaml"}});
  ASSERT_NE(compiled.policy, nullptr);
  class Usage final : public UsageView {
   public:
    std::optional<BudgetUsage> Budget(absl::string_view name) const override {
      if (name != "daily") return std::nullopt;
      BudgetUsage usage;
      usage.amount_nanos = 1000;
      usage.spent_nanos = 955;
      return usage;
    }
  } usage;
  const std::pair<absl::string_view, absl::string_view> labels[] = {
      {"task", "triage"}};
  CallRequest request = Request("big", 1000, 2000);
  request.labels = labels;
  absl::StatusOr<CallPlan> plan =
      PlanCall(*compiled.policy, request, {&usage, absl::UnixEpoch()});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->model, "tiny");
  EXPECT_EQ(plan->max_output_tokens, 500);
  ASSERT_EQ(plan->fired.size(), 2u);
  EXPECT_EQ(plan->fired[0].rule, "route:to-small");
  EXPECT_EQ(plan->fired[0].message(),
            "routed big to small because request.labels.task == \"triage\"");
  EXPECT_EQ(plan->fired[1].rule, "slo:s");
  EXPECT_EQ(plan->fired[1].message(),
            "downgraded small to tiny, capped output at 500 tokens: budget "
            "\"daily\" is 95.5% spent and budget.used_ratio >= 90%");

  // on_exhausted steps too, once the ledger could not fit the plan.
  const CompileResult chain = CompilePolicy({{"p.yaml", R"yaml(
apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: t }
pricing:
  big:   { input: "2.00", output: "8.00" }
  small: { input: "0.40", output: "1.60" }
on_exhausted:
  - downgrade: { big: small }
  - cap_to_fit: { min_output_tokens: 100 }
)yaml"}});
  ASSERT_NE(chain.policy, nullptr);
  absl::StatusOr<CallPlan> exhausted =
      PlanCall(*chain.policy, Request("big", 1000, 2000));
  ASSERT_TRUE(exhausted.ok()) << exhausted.status();
  ASSERT_TRUE(NextExhaustedStep(*chain.policy, Request("big", 1000, 2000),
                                1'000'000, &*exhausted));
  ASSERT_TRUE(NextExhaustedStep(*chain.policy, Request("big", 1000, 2000),
                                1'000'000, &*exhausted));
  ASSERT_EQ(exhausted->fired.size(), 2u);
  EXPECT_EQ(exhausted->fired[0].rule, "on_exhausted:downgrade");
  EXPECT_THAT(exhausted->fired[0].message(),
              StartsWith("a budget has $0.001 left, less than the $"));
  EXPECT_THAT(exhausted->fired[0].message(),
              HasSubstr(" big may cost; downgraded to small"));
  EXPECT_EQ(exhausted->fired[1].rule, "on_exhausted:cap_to_fit");
  EXPECT_THAT(exhausted->fired[1].message(),
              StartsWith("capped output from 2000 to "));
  EXPECT_THAT(exhausted->fired[1].message(),
              HasSubstr(" tokens to fit the $0.001 a budget has left"));
}

}  // namespace
}  // namespace bursar::policy
