// Evaluation must not allocate (DESIGN.md section 4). This binary links
// tests/support/alloc_counter, which replaces the global allocation
// functions with counting ones; the tests count the calling thread's
// allocations around Eval calls.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/expr/expr.h"
#include "policy/expr/test_schema.h"
#include "tests/support/alloc_counter.h"

namespace bursar::policy::expr {
namespace {

using ::testing::SizeIs;

using ::bursar::testing::AllocationsDuring;

TEST(NoAllocTest, TheCountingHookSeesAllocations) {
  // Guards the test below against a hook that the build bypasses.
  std::unique_ptr<std::string> s;
  const int64_t n =
      AllocationsDuring([&] { s = std::make_unique<std::string>(100, 'x'); });
  EXPECT_GE(n, 2);
}

TEST(NoAllocTest, EvalDoesNotAllocate) {
  const std::vector<std::string> sources = {
      "budget.used_ratio >= 90% && now.hour >= 15",
      "request.labels.team in [\"search\", \"ads\"] && "
      "request.model.startsWith(\"gpt-4\")",
      "budgets[\"org-monthly\"].remaining < $100 || "
      "request.estimated_cost > $0.50",
      "request.model.endsWith(\"-mini\") || request.model.contains(\"4.1\")",
      "budget.amount * 90% > budget.remaining && "
      "budget.remaining / budget.amount < 0.5",
      "(request.input_tokens + 10) * 2 / 3 - 1 > now.hour",
      "budget.period_elapsed + 30m >= 2h || -budget.used_ratio < 0",
      "request.model in [\"gpt-4.1\", \"o4-mini\"] && !request.streaming",
      "now.hour in [1, 2.5, 16] && request.labels[\"cost-center\"] == \"42\"",
      "request.model.matches(\"^gpt-4(\\\\.1)?(-mini)?$\")",
      "request.labels.user.matches(\"^[a-z]+@example\\\\.com$\")",
      "100 / request.input_tokens > 1",  // a runtime error
  };
  TestSchema schema;
  std::vector<std::unique_ptr<const Program>> programs;
  for (const std::string& source : sources) {
    CompileResult result = Compile(source, schema);
    ASSERT_THAT(result.errors, SizeIs(0)) << source;
    programs.push_back(std::move(result.program));
  }

  TestActivation activation;
  activation.model = "gpt-4.1-mini";
  activation.labels = {
      {"team", "search"}, {"cost-center", "42"}, {"user", "ada@example.com"}};
  activation.used_ratio = 0.93;
  activation.hour = 16;
  activation.remaining_nanos = 5'000'000'000;
  activation.amount_nanos = 100'000'000'000;
  activation.budgets = {{"org-monthly", 0.4, 60'000'000'000}};
  activation.period_elapsed = absl::Hours(1) + absl::Minutes(45);
  activation.input_tokens = 0;

  // RE2 builds its automaton lazily; let it see these inputs once.
  for (const auto& program : programs) program->EvalBool(activation);

  int fired = 0;
  const int64_t n = AllocationsDuring([&] {
    for (int round = 0; round < 100; ++round) {
      for (const auto& program : programs) {
        bool ok = false;
        program->Eval(activation, &ok);
        if (program->EvalBool(activation)) ++fired;
      }
    }
  });
  EXPECT_EQ(n, 0);
  EXPECT_GT(fired, 0);  // the conditions did real work
}

}  // namespace
}  // namespace bursar::policy::expr
