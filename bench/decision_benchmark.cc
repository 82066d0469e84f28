// The in-process decision (DESIGN.md section 7: p50 <= 1 us, p99 <= 5 us for
// a policy of 50 rules with 10k budgets): PlanCall on a 50-rule policy, with
// budgets read from a 10k-entry map, for a request that fires nothing, one
// that fires a route and a spend SLO, and one that a deny rule refuses; and
// CompilePolicy of that policy, which runs once per policy load.
//
// The whole in-process decision with 100k rate keys (BM_Decision*): PlanCall
// plus what server/decider.cc does around it before the ledger: MatchLimits,
// taking a place in every matching rate limit and a slot in every matching
// concurrency pool, with 100,000 users live in the rate limiter (300,000
// counters: three per-user rules); then giving both back, as the Decider
// does for a plan that goes no further. The ledger's Reserve + Settle is in
// bench/ledger_benchmark.cc.
//
// Cost computation (BM_CostNanos*): CostNanos (policy/pricing.h) of a call's
// usage, alone and with the catalog lookup of the model's price.
//
// The global allocation functions are replaced by counting ones
// (tests/support/alloc_counter.h), so every benchmark also reports its
// allocations per call (`allocs_per_call` / `allocs_per_op`). As in bursard,
// abseil's mutex deadlock detection is off (main below). BM_PlanCallPercentiles
// times single calls of a mix of the three requests and reports p50 and p99
// in nanoseconds (each sample includes ~20 ns of clock reads).
//
//   build/bench/bursar_decision_benchmark --benchmark_repetitions=5 \
//     --benchmark_report_aggregates_only=true

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "bench/run_benchmarks.h"
#include "benchmark/benchmark.h"
#include "limits/concurrency_pools.h"
#include "limits/rate_limiter.h"
#include "policy/call_plan.h"
#include "policy/compiled_policy.h"
#include "policy/limit_asks.h"
#include "policy/loader.h"
#include "policy/pricing.h"
#include "policy/usage_view.h"
#include "tests/support/alloc_counter.h"

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
// on_exhausted chain of 3 steps, 3 alerts, 3 per-user rate limits (one
// also limits tokens) and a concurrency pool with a reserve; 15 models.
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
  for (int i = 0; i < 3; ++i) {
    absl::StrAppend(&yaml, "  - { name: alert-", i, ", budget: team-", i,
                    ", when: budget.used_ratio >= 85%, severity: warning }\n");
  }
  yaml += "rate_limits:\n";
  for (int i = 0; i < 3; ++i) {
    absl::StrAppend(
        &yaml, "  - { name: rate-", i,
        ", key: request.labels.user, requests_per_minute: ", 60 * (i + 1),
        i == 0 ? ", tokens_per_minute: 100000" : "", " }\n");
  }
  // One pool for the most expensive of the three models the rules use.
  yaml +=
      "concurrency:\n"
      "  - name: gpt41-pool\n"
      "    when: request.model == \"gpt-4.1\"\n"
      "    max_in_flight: 200\n"
      "    reserve: { critical: 60 }\n";
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

// Runs `body` once per iteration and reports the calling thread's
// allocations per iteration as `counter`.
template <typename Body>
void RunCountingAllocations(benchmark::State& state, const char* counter,
                            Body body) {
  const int64_t before = testing::ThreadAllocations();
  for (auto _ : state) body();
  state.counters[counter] =
      static_cast<double>(testing::ThreadAllocations() - before) /
      static_cast<double>(std::max<int64_t>(1, state.iterations()));
}

// As RunCountingAllocations, timing each call of `body(n)` (n counts the
// iterations from 0) alone; also reports the p50 and p99 of those samples
// in nanoseconds (each includes ~20 ns of clock reads).
template <typename Body>
void RunTimingEachCall(benchmark::State& state, const char* counter,
                       Body body) {
  std::vector<int64_t> samples_nanos;
  samples_nanos.reserve(1 << 20);
  uint64_t n = 0;
  RunCountingAllocations(state, counter, [&] {
    const auto start = std::chrono::steady_clock::now();
    body(n++);
    const auto end = std::chrono::steady_clock::now();
    if (samples_nanos.size() < samples_nanos.capacity()) {
      samples_nanos.push_back(
          std::chrono::duration_cast<std::chrono::nanoseconds>(end - start)
              .count());
    }
  });
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

void RunPlanCall(benchmark::State& state, const Scenario& scenario) {
  const Fixture& f = TheFixture();
  if (!Verify(state, f, scenario)) return;
  const DecisionContext context{scenario.usage, f.now};
  RunCountingAllocations(state, "allocs_per_call", [&] {
    absl::StatusOr<CallPlan> plan =
        PlanCall(*f.policy, scenario.request, context);
    benchmark::DoNotOptimize(plan);
  });
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
  RunTimingEachCall(state, "allocs_per_call", [&](uint64_t n) {
    const Scenario& s = scenarios[n % std::size(scenarios)];
    absl::StatusOr<CallPlan> plan =
        PlanCall(*f.policy, s.request, DecisionContext{s.usage, f.now});
    benchmark::DoNotOptimize(plan);
  });
}
BENCHMARK(BM_PlanCallPercentiles);

// The rate limiter and the pools a Decider holds, with 100,000 users live:
// every user has taken one request (and its tokens) from each of the three
// per-user rules in the current minute, so 300,000 counters exist.
constexpr int kRateUsers = 100'000;

struct LimitsFixture {
  LimitsFixture() {
    const Fixture& f = TheFixture();
    users.reserve(kRateUsers);
    for (int u = 0; u < kRateUsers; ++u) {
      users.push_back(absl::StrFormat("user-%05d", u));
    }
    Scenario s = f.NothingFires();
    Labels labels = f.chat_labels;
    limits::RateCharges charges;
    LimitAsks asks;
    absl::StatusOr<CallPlan> plan =
        PlanCall(*f.policy, s.request, DecisionContext{s.usage, f.now});
    if (!plan.ok()) std::abort();
    for (const std::string& user : users) {
      labels[2].second = user;
      s.request.labels = labels;
      MatchLimits(*f.policy, s.request, *plan, f.now, &asks);
      charges.clear();
      if (asks.rates.size() != 3 ||
          rates.Acquire(asks.rates, asks.tokens, f.now, false, &charges)) {
        std::fprintf(stderr, "filling the rate limiter failed\n");
        std::abort();
      }
    }
  }

  std::vector<std::string> users;
  limits::RateLimiter rates;
  limits::ConcurrencyPools pools;
};

LimitsFixture& TheLimits() {
  static LimitsFixture* const fixture = new LimitsFixture();
  return *fixture;
}

// What one decision came to.
struct Decided {
  bool allowed = false;
  size_t rate_charges = 0;
  size_t pools = 0;
};

// Decider::Decide up to the ledger (server/decider.cc): plan the call; a
// plan the policy denies ends there. Otherwise match its limits, take a
// place in every rate limit and a slot in every pool (all or none); then
// give them back, as the Decider does for a plan that goes no further.
// (Report gives the pool slot back the same way and corrects the rate
// charges' tokens with one lookup per charge instead of releasing them.)
Decided DecideWithLimits(const CompiledPolicy& policy, const CallRequest& call,
                         const DecisionContext& context,
                         LimitsFixture& limits) {
  Decided decided;
  absl::StatusOr<CallPlan> plan = PlanCall(policy, call, context);
  if (!plan.ok() || !plan->allowed) return decided;
  LimitAsks asks;
  limits::RateCharges rate_charges;
  MatchLimits(policy, call, *plan, context.now, &asks);
  if (limits.rates.Acquire(asks.rates, asks.tokens, context.now,
                           /*dry_run=*/false, &rate_charges)) {
    return decided;
  }
  if (limits.pools.Acquire(asks.pools, call.priority, /*dry_run=*/false)) {
    limits.rates.Release(rate_charges);
    return decided;
  }
  decided.allowed = true;
  decided.rate_charges = rate_charges.size();
  decided.pools = asks.pools.size();
  benchmark::DoNotOptimize(plan);
  // (Decider::Decide reserves in the ledger here.)
  limits.rates.Release(rate_charges);
  for (const limits::PoolAsk& pool : asks.pools) {
    limits.pools.Release(pool.pool, call.priority);
  }
  return decided;
}

// A scenario whose user label cycles through the 100k users.
struct UserCycle {
  UserCycle(const Scenario& s, const Labels& base) : scenario(s), labels(base) {
    scenario.request.labels = labels;
  }
  // The request points into `labels`: never copied or moved.
  UserCycle(const UserCycle&) = delete;
  UserCycle& operator=(const UserCycle&) = delete;
  // Points the request at user `n % kRateUsers`.
  const Scenario& For(uint64_t n, const LimitsFixture& limits) {
    labels[2].second = limits.users[n % kRateUsers];
    return scenario;
  }
  Scenario scenario;
  Labels labels;
};

// Checks the scenario with limits decides as intended (charges: one per
// rate rule, plus the pool for gpt-4.1); false with an error if not.
bool VerifyWithLimits(benchmark::State& state, const Fixture& f,
                      LimitsFixture& limits, const Scenario& s) {
  const Decided d = DecideWithLimits(*f.policy, s.request,
                                     DecisionContext{s.usage, f.now}, limits);
  const size_t want_pools = s.model == "gpt-4.1" ? 1 : 0;
  if (d.allowed != s.allowed ||
      (s.allowed && (d.rate_charges != 3 || d.pools != want_pools))) {
    state.SkipWithError(absl::StrCat("unexpected decision: allowed=", d.allowed,
                                     " rate_charges=", d.rate_charges,
                                     " pools=", d.pools)
                            .c_str());
    return false;
  }
  if (limits.pools.in_flight("gpt41-pool") != 0) {
    state.SkipWithError("a pool slot was not given back");
    return false;
  }
  return true;
}

void RunDecision(benchmark::State& state, const Scenario& scenario,
                 const Labels& labels) {
  const Fixture& f = TheFixture();
  LimitsFixture& limits = TheLimits();
  UserCycle cycle(scenario, labels);
  if (!VerifyWithLimits(state, f, limits, cycle.For(0, limits))) return;
  const size_t live_before = limits.rates.size();
  uint64_t n = 0;
  RunCountingAllocations(state, "allocs_per_op", [&] {
    const Scenario& s = cycle.For(n++, limits);
    Decided d = DecideWithLimits(*f.policy, s.request,
                                 DecisionContext{s.usage, f.now}, limits);
    benchmark::DoNotOptimize(d);
  });
  state.counters["rate_counters"] = static_cast<double>(limits.rates.size());
  if (limits.rates.size() != live_before) {
    state.SkipWithError("the number of live rate counters changed");
  }
}

// gpt-4.1, nothing fires: 3 rate places and a pool slot.
void BM_DecisionNothingFires(benchmark::State& state) {
  RunDecision(state, TheFixture().NothingFires(), TheFixture().chat_labels);
}
BENCHMARK(BM_DecisionNothingFires);

// Routed and downgraded to gpt-4.1-nano: 3 rate places, no pool.
void BM_DecisionRouteAndSloFire(benchmark::State& state) {
  RunDecision(state, TheFixture().RouteAndSloFire(),
              TheFixture().triage_labels);
}
BENCHMARK(BM_DecisionRouteAndSloFire);

// Denied by the last deny rule: no limits are taken.
void BM_DecisionDenied(benchmark::State& state) {
  RunDecision(state, TheFixture().Denied(), TheFixture().marketing_labels);
}
BENCHMARK(BM_DecisionDenied);

// The three in turn, each for the next user, each decision timed alone;
// p50 and p99 in nanoseconds (each sample includes ~20 ns of clock reads).
void BM_DecisionPercentiles(benchmark::State& state) {
  const Fixture& f = TheFixture();
  LimitsFixture& limits = TheLimits();
  UserCycle cycles[] = {UserCycle(f.NothingFires(), f.chat_labels),
                        UserCycle(f.RouteAndSloFire(), f.triage_labels),
                        UserCycle(f.Denied(), f.marketing_labels)};
  for (UserCycle& c : cycles) {
    if (!VerifyWithLimits(state, f, limits, c.For(0, limits))) return;
  }
  RunTimingEachCall(state, "allocs_per_op", [&](uint64_t n) {
    const Scenario& s = cycles[n % std::size(cycles)].For(n, limits);
    Decided d = DecideWithLimits(*f.policy, s.request,
                                 DecisionContext{s.usage, f.now}, limits);
    benchmark::DoNotOptimize(d);
  });
}
BENCHMARK(BM_DecisionPercentiles);

// 64 usages of different sizes, some with cached input tokens.
std::vector<TokenCounts> SomeUsages() {
  std::vector<TokenCounts> usages;
  for (int i = 0; i < 64; ++i) {
    TokenCounts t;
    t.input_tokens = 300 + 977 * i;
    t.cached_input_tokens = i % 3 == 0 ? 0 : t.input_tokens / (2 + i % 5);
    t.output_tokens = 17 + 331 * i;
    usages.push_back(t);
  }
  return usages;
}

// The exact cost of a call's usage at a known price (what Report computes
// from the prices stored with the reservation).
void BM_CostNanos(benchmark::State& state) {
  const ModelPrice* price = TheFixture().policy->FindPrice("gpt-4.1");
  const std::vector<TokenCounts> usages = SomeUsages();
  if (price == nullptr || !CostNanos(*price, usages[5]).ok()) {
    state.SkipWithError("no price for gpt-4.1");
    return;
  }
  size_t next = 0;
  RunCountingAllocations(state, "allocs_per_op", [&] {
    absl::StatusOr<int64_t> cost = CostNanos(*price, usages[next]);
    next = (next + 1) % usages.size();
    benchmark::DoNotOptimize(cost);
  });
}
BENCHMARK(BM_CostNanos);

// As above, with the model's price looked up in the 15-model catalog first
// (what PlanCall does for its estimate), cycling through the models.
void BM_CostNanosWithLookup(benchmark::State& state) {
  const CompiledPolicy& policy = *TheFixture().policy;
  const std::vector<TokenCounts> usages = SomeUsages();
  for (const char* model : kModels) {
    if (policy.FindPrice(model) == nullptr) {
      state.SkipWithError(absl::StrCat("no price for ", model).c_str());
      return;
    }
  }
  size_t next = 0;
  RunCountingAllocations(state, "allocs_per_op", [&] {
    const ModelPrice* price =
        policy.FindPrice(kModels[next % std::size(kModels)]);
    absl::StatusOr<int64_t> cost =
        CostNanos(*price, usages[next % usages.size()]);
    ++next;
    benchmark::DoNotOptimize(cost);
  });
}
BENCHMARK(BM_CostNanosWithLookup);

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

int main(int argc, char** argv) {
  return bursar::bench::RunBenchmarks(argc, argv);
}
