// The in-process decision (DESIGN.md section 7: p50 <= 1 us, p99 <= 5 us for
// a policy of 50 rules with 10k budgets): PlanCall on a 50-rule policy, with
// budgets read from a 10k-entry map, for a request that fires nothing, one
// that fires a route and a spend SLO, and one that a deny rule refuses; and
// CompilePolicy of that policy, which runs once per policy load.
//
// The global allocation functions are replaced by counting ones, so every
// PlanCall benchmark also reports `allocs_per_call`. BM_PlanCallPercentiles
// times single calls of a mix of the three requests and reports p50 and p99
// in nanoseconds (each sample includes ~20 ns of clock reads).
//
//   build/bench/bursar_decision_benchmark --benchmark_repetitions=5 \
//     --benchmark_report_aggregates_only=true

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "policy/call_plan.h"
#include "policy/compiled_policy.h"
#include "policy/loader.h"
#include "policy/usage_view.h"

namespace {

// Every allocation in the process; the benchmarks are single-threaded.
std::atomic<int64_t> allocations{0};

void* CountedAllocate(std::size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t size) { return CountedAllocate(size); }
void* operator new[](std::size_t size) { return CountedAllocate(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

namespace bursar::policy {
namespace {

constexpr int kRoutes = 10;
constexpr int kSlos = 15;
constexpr int kDenyRules = 15;
constexpr int kBudgets = 10'000;

// 15 priced models; the first three are the ones the rules move between.
constexpr const char* kModels[] = {"gpt-4.1",
                                   "gpt-4.1-mini",
                                   "gpt-4.1-nano",
                                   "gpt-4o",
                                   "gpt-4o-mini",
                                   "o4-mini",
                                   "o3",
                                   "claude-opus-4",
                                   "claude-sonnet-4",
                                   "claude-3-5-haiku",
                                   "gemini-2.5-pro",
                                   "gemini-2.5-flash",
                                   "gemini-2.0-flash",
                                   "mistral-large-2",
                                   "llama-3.3-70b"};

// 50 rules: 10 routes, 15 spend SLOs over 15 budgets, 15 deny rules, an
// on_exhausted chain of 3 steps, 4 alerts and 3 rate limits; 15 models.
std::string FiftyRulePolicy() {
  std::string yaml =
      "apiVersion: bursar.dev/v1\n"
      "kind: Policy\n"
      "metadata: { name: decision-benchmark }\n"
      "timezone: America/New_York\n"
      "pricing:\n";
  for (size_t i = 0; i < std::size(kModels); ++i) {
    absl::StrAppend(&yaml, "  ", kModels[i], ": { input: \"", 1 + i % 5,
                    ".00\", cached_input: \"0.10\", output: \"", 4 + i % 7,
                    ".00\" }\n");
  }
  yaml += "defaults: { max_output_tokens: 4096, unknown_model: reject }\n";
  yaml += "routes:\n";
  for (int i = 0; i < kRoutes; ++i) {
    // Route 0 takes triage to the mini model; the others look at other
    // tasks and models, so a chat request evaluates all ten.
    absl::StrAppend(&yaml, "  - name: route-", i,
                    "\n    when: ", "request.labels.task == \"",
                    i == 0 ? "triage" : absl::StrCat("task-", i),
                    "\" && request.model == \"", kModels[i % 3 == 1 ? 3 : 0],
                    "\"\n    route_to: ", kModels[1], "\n");
  }
  yaml += "spend_slos:\n";
  for (int i = 0; i < kSlos; ++i) {
    absl::StrAppend(&yaml, "  - name: slo-", i, "\n    budget: team-", i,
                    "\n    when: budget.used_ratio >= ", 80 + i,
                    "% && now.hour >= 15\n    then: { downgrade: { ",
                    kModels[0], ": ", kModels[1], ", ", kModels[1], ": ",
                    kModels[2], " }, cap_output_tokens: ", 512 + i,
                    " }\n    escalate_after: 3\n");
  }
  yaml += "deny:\n";
  for (int i = 0; i < kDenyRules; ++i) {
    // The last rule refuses marketing's use of the most expensive model;
    // the others test labels, token counts and the estimate.
    if (i == kDenyRules - 1) {
      absl::StrAppend(&yaml, "  - name: deny-", i,
                      "\n    when: request.labels.team == \"marketing\" && "
                      "request.model == \"claude-opus-4\"\n"
                      "    message: marketing may not use claude-opus-4\n");
    } else {
      absl::StrAppend(&yaml, "  - name: deny-", i,
                      "\n    when: request.labels.team == \"blocked-", i,
                      "\" || request.input_tokens > ", 500'000 + i,
                      " || request.estimated_cost > $", 50 + i, "\n");
    }
  }
  yaml +=
      "on_exhausted:\n"
      "  - downgrade: { gpt-4.1: gpt-4.1-mini, claude-opus-4: "
      "claude-sonnet-4 }\n"
      "  - cap_to_fit: { min_output_tokens: 256 }\n"
      "  - deny: { message: \"the budget is spent\" }\n";
  yaml += "alerts:\n";
  for (int i = 0; i < 4; ++i) {
    absl::StrAppend(&yaml, "  - { name: alert-", i, ", budget: team-", i,
                    ", when: budget.used_ratio >= 85%, severity: warning }\n");
  }
  yaml += "rate_limits:\n";
  for (int i = 0; i < 3; ++i) {
    absl::StrAppend(&yaml, "  - { name: rate-", i,
                    ", key: request.labels.user, requests_per_minute: ",
                    60 * (i + 1), " }\n");
  }
  return yaml;
}

std::shared_ptr<const CompiledPolicy> MustCompile(const std::string& yaml) {
  CompileResult result = CompilePolicy({SourceFile{"bench.yaml", yaml}});
  if (result.policy == nullptr) {
    for (const Diagnostic& d : result.diagnostics) {
      std::fprintf(stderr, "%s\n", FormatDiagnostic(d).c_str());
    }
    std::abort();
  }
  return result.policy;
}

// 10k budgets by name, answered from a flat_hash_map without allocating.
class MapUsage final : public UsageView {
 public:
  // Every budget `used_ratio` spent; `hot` (if any) 95% spent.
  MapUsage(double used_ratio, absl::string_view hot) {
    budgets_.reserve(kBudgets);
    const absl::Time start =
        absl::FromCivil(absl::CivilDay(2025, 6, 3), absl::UTCTimeZone());
    for (int i = 0; i < kBudgets; ++i) {
      BudgetUsage usage;
      usage.amount_nanos = 1'000'000'000'000;
      usage.spent_nanos = static_cast<int64_t>(
          static_cast<double>(usage.amount_nanos) * used_ratio);
      usage.period_start = start;
      usage.period_end = start + absl::Hours(24);
      budgets_.emplace(absl::StrCat("team-", i), usage);
    }
    if (!hot.empty()) {
      BudgetUsage& usage = budgets_.at(hot);
      usage.spent_nanos = usage.amount_nanos / 100 * 95;
    }
  }

  std::optional<BudgetUsage> Budget(absl::string_view name) const override {
    auto it = budgets_.find(name);
    if (it == budgets_.end()) return std::nullopt;
    return it->second;
  }

 private:
  absl::flat_hash_map<std::string, BudgetUsage> budgets_;
};

using Labels = std::vector<std::pair<absl::string_view, absl::string_view>>;

// One decision to benchmark, with what it must come to.
struct Scenario {
  CallRequest request;
  const UsageView* usage;
  bool allowed;
  absl::string_view model;
  size_t fired;
};

struct Fixture {
  std::shared_ptr<const CompiledPolicy> policy = MustCompile(FiftyRulePolicy());
  MapUsage calm{0.40, ""};
  MapUsage hot{0.40, "team-3"};
  // 16:30 in New York: past the SLOs' 15:00.
  absl::Time now = absl::FromCivil(absl::CivilSecond(2025, 6, 3, 16, 30, 0),
                                   absl::FixedTimeZone(-4 * 3600));
  // Labels sorted by key.
  Labels chat_labels = {{"task", "chat"}, {"team", "search"}, {"user", "ada"}};
  Labels triage_labels = {
      {"task", "triage"}, {"team", "search"}, {"user", "ada"}};
  Labels marketing_labels = {
      {"task", "chat"}, {"team", "marketing"}, {"user", "bob"}};

  Scenario NothingFires() const {
    CallRequest request;
    request.model = "gpt-4.1";
    request.labels = chat_labels;
    request.input_tokens = 1200;
    request.max_output_tokens = 1000;
    return {request, &calm, true, "gpt-4.1", 0};
  }
  // route-0 sends triage to gpt-4.1-mini; slo-3 (team-3 at 95%) downgrades
  // that to gpt-4.1-nano and caps the output.
  Scenario RouteAndSloFire() const {
    CallRequest request;
    request.model = "gpt-4.1";
    request.labels = triage_labels;
    request.input_tokens = 1200;
    request.max_output_tokens = 1000;
    return {request, &hot, true, "gpt-4.1-nano", 2};
  }
  // The last deny rule refuses it, after every other rule was evaluated.
  Scenario Denied() const {
    CallRequest request;
    request.model = "claude-opus-4";
    request.labels = marketing_labels;
    request.input_tokens = 1200;
    request.max_output_tokens = 1000;
    return {request, &calm, false, "claude-opus-4", 0};
  }
};

const Fixture& TheFixture() {
  static const Fixture* const fixture = new Fixture();
  return *fixture;
}

// Checks the scenario decides as intended; false, with an error set on
// `state`, if not.
bool Verify(benchmark::State& state, const Fixture& f, const Scenario& s) {
  absl::StatusOr<CallPlan> plan =
      PlanCall(*f.policy, s.request, DecisionContext{s.usage, f.now});
  if (!plan.ok()) {
    state.SkipWithError(std::string(plan.status().message()).c_str());
    return false;
  }
  if (plan->allowed != s.allowed || plan->model != s.model ||
      plan->fired.size() != s.fired) {
    state.SkipWithError(absl::StrCat("unexpected plan: allowed=", plan->allowed,
                                     " model=", plan->model,
                                     " fired=", plan->fired.size(),
                                     " deny=", plan->deny_rule)
                            .c_str());
    return false;
  }
  return true;
}

void RunPlanCall(benchmark::State& state, const Scenario& scenario) {
  const Fixture& f = TheFixture();
  if (!Verify(state, f, scenario)) return;
  const DecisionContext context{scenario.usage, f.now};
  const int64_t before = allocations.load(std::memory_order_relaxed);
  for (auto _ : state) {
    absl::StatusOr<CallPlan> plan =
        PlanCall(*f.policy, scenario.request, context);
    benchmark::DoNotOptimize(plan);
  }
  const int64_t after = allocations.load(std::memory_order_relaxed);
  state.counters["allocs_per_call"] =
      static_cast<double>(after - before) /
      static_cast<double>(std::max<int64_t>(1, state.iterations()));
}

void BM_PlanCallNothingFires(benchmark::State& state) {
  RunPlanCall(state, TheFixture().NothingFires());
}
BENCHMARK(BM_PlanCallNothingFires);

void BM_PlanCallRouteAndSloFire(benchmark::State& state) {
  RunPlanCall(state, TheFixture().RouteAndSloFire());
}
BENCHMARK(BM_PlanCallRouteAndSloFire);

void BM_PlanCallDenied(benchmark::State& state) {
  RunPlanCall(state, TheFixture().Denied());
}
BENCHMARK(BM_PlanCallDenied);

// Single calls timed one by one, cycling through the three scenarios;
// reports the p50 and p99 of those samples in nanoseconds.
void BM_PlanCallPercentiles(benchmark::State& state) {
  const Fixture& f = TheFixture();
  const Scenario scenarios[] = {f.NothingFires(), f.RouteAndSloFire(),
                                f.Denied()};
  for (const Scenario& s : scenarios) {
    if (!Verify(state, f, s)) return;
  }
  std::vector<int64_t> samples_nanos;
  samples_nanos.reserve(1 << 20);
  size_t next = 0;
  for (auto _ : state) {
    const Scenario& s = scenarios[next];
    next = (next + 1) % std::size(scenarios);
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<CallPlan> plan =
        PlanCall(*f.policy, s.request, DecisionContext{s.usage, f.now});
    benchmark::DoNotOptimize(plan);
    const auto end = std::chrono::steady_clock::now();
    if (samples_nanos.size() < samples_nanos.capacity()) {
      samples_nanos.push_back(
          std::chrono::duration_cast<std::chrono::nanoseconds>(end - start)
              .count());
    }
  }
  if (samples_nanos.empty()) return;
  std::sort(samples_nanos.begin(), samples_nanos.end());
  auto percentile = [&](double p) {
    const size_t index = std::min(
        samples_nanos.size() - 1,
        static_cast<size_t>(p * static_cast<double>(samples_nanos.size())));
    return static_cast<double>(samples_nanos[index]);
  };
  state.counters["p50_ns"] = percentile(0.50);
  state.counters["p99_ns"] = percentile(0.99);
}
BENCHMARK(BM_PlanCallPercentiles);

void BM_CompilePolicy(benchmark::State& state) {
  const std::vector<SourceFile> files = {
      SourceFile{"bench.yaml", FiftyRulePolicy()}};
  for (auto _ : state) {
    CompileResult result = CompilePolicy(files);
    if (result.policy == nullptr) {
      state.SkipWithError("the policy does not compile");
      return;
    }
    benchmark::DoNotOptimize(result.policy);
  }
}
BENCHMARK(BM_CompilePolicy);

}  // namespace
}  // namespace bursar::policy
