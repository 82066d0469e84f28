// Compile and Eval costs of policy/expr conditions. Evaluation is on the
// hot path of every Check; compilation happens once per policy load.

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "policy/expr/expr.h"
#include "policy/expr/test_schema.h"

namespace bursar::policy::expr {
namespace {

constexpr char kTypical[] =
    "budget.used_ratio >= 90% && now.hour >= 15 && "
    "request.labels.team in [\"search\", \"ads\"] && "
    "request.model.startsWith(\"gpt-4\")";

TestActivation MakeActivation() {
  TestActivation activation;
  activation.model = "gpt-4.1-mini";
  activation.labels = {
      {"team", "search"}, {"task", "triage"}, {"user", "ada@example.com"}};
  activation.input_tokens = 1200;
  activation.estimated_cost_nanos = 2'400'000;
  activation.used_ratio = 0.93;
  activation.remaining_nanos = 7'000'000'000;
  activation.amount_nanos = 100'000'000'000;
  activation.period_elapsed = absl::Hours(15);
  activation.hour = 16;
  activation.weekday = "Tue";
  return activation;
}

// 10 groups of 5 conditions, `(c1 && ... && c5) || (...) || ...`, where in
// every group the first four hold and the fifth does not: all 50 are
// evaluated and the result is false (the worst case).
std::string FiftyConditions() {
  std::string source;
  for (int group = 0; group < 10; ++group) {
    if (group > 0) source += " || ";
    absl::StrAppend(&source, "(budget.used_ratio >= ", 50 + group,
                    "% && now.hour >= ", group,
                    " && request.labels.team in [\"search\", \"team-", group,
                    "\"] && request.estimated_cost < $", group + 1,
                    " && request.input_tokens > ", 2000 + group * 100, ")");
  }
  return source;
}

std::unique_ptr<const Program> MustCompile(const std::string& source) {
  static const TestSchema schema;
  CompileResult result = Compile(source, schema);
  if (result.program == nullptr) {
    std::fprintf(stderr, "%s: %s\n", source.c_str(),
                 result.errors[0].message.c_str());
    std::abort();
  }
  return std::move(result.program);
}

void BM_CompileTypicalCondition(benchmark::State& state) {
  const TestSchema schema;
  for (auto _ : state) {
    CompileResult result = Compile(kTypical, schema);
    benchmark::DoNotOptimize(result.program);
  }
}
BENCHMARK(BM_CompileTypicalCondition);

void BM_CompileFiftyConditions(benchmark::State& state) {
  const TestSchema schema;
  const std::string source = FiftyConditions();
  for (auto _ : state) {
    CompileResult result = Compile(source, schema);
    benchmark::DoNotOptimize(result.program);
  }
}
BENCHMARK(BM_CompileFiftyConditions);

void RunEval(benchmark::State& state, const std::string& source,
             bool expected) {
  const std::unique_ptr<const Program> program = MustCompile(source);
  const TestActivation activation = MakeActivation();
  if (program->EvalBool(activation) != expected) {
    state.SkipWithError("unexpected result");
    return;
  }
  for (auto _ : state) {
    bool ok = false;
    benchmark::DoNotOptimize(program->EvalBool(activation, &ok));
  }
}

void BM_EvalSimpleComparison(benchmark::State& state) {
  RunEval(state, "now.hour >= 15", true);
}
BENCHMARK(BM_EvalSimpleComparison);

void BM_EvalSloCondition(benchmark::State& state) {
  RunEval(state, "budget.used_ratio >= 90% && now.hour >= 15", true);
}
BENCHMARK(BM_EvalSloCondition);

void BM_EvalFiftyConditions(benchmark::State& state) {
  RunEval(state, FiftyConditions(), false);
}
BENCHMARK(BM_EvalFiftyConditions);

void BM_EvalMatches(benchmark::State& state) {
  RunEval(state, "request.model.matches(\"^gpt-4(\\\\.1)?(-mini)?$\")", true);
}
BENCHMARK(BM_EvalMatches);

void BM_EvalTypicalCondition(benchmark::State& state) {
  RunEval(state, kTypical, true);
}
BENCHMARK(BM_EvalTypicalCondition);

}  // namespace
}  // namespace bursar::policy::expr
