#include "policy/limit_asks.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "policy/variables.h"

namespace bursar::policy {
namespace {

std::string WindowName(absl::Duration window) {
  if (window == absl::Seconds(1)) return "second";
  if (window == absl::Minutes(1)) return "minute";
  if (window == absl::Hours(1)) return "hour";
  if (window == absl::Hours(24)) return "day";
  return absl::FormatDuration(window);
}

}  // namespace

void MatchLimits(const CompiledPolicy& policy, const CallRequest& request,
                 const CallPlan& plan, absl::Time now, LimitAsks* asks) {
  const PolicyRules& rules = policy.rules();
  asks->rates.clear();
  asks->pools.clear();
  asks->tokens = request.input_tokens + plan.max_output_tokens;
  if (rules.rate_limits.empty() && rules.concurrency.empty()) return;

  RequestFacts facts;
  facts.model = plan.model;
  facts.provider = request.provider;
  facts.priority = request.priority;
  facts.labels = request.labels;
  facts.input_tokens = request.input_tokens;
  facts.max_output_tokens = plan.max_output_tokens;
  facts.estimated_cost_nanos = plan.estimated_cost_nanos;
  facts.attempt = request.attempt;
  // No slot table: these few conditions and keys read fewer variables than
  // filling one would (VariableSlots::Fill looks up every label the policy
  // names), so they ask Get. The civil time only if a condition reads it.
  const absl::CivilSecond local_now = rules.slots.reads_now
                                          ? LocalCivilTime(now, rules.timezone)
                                          : absl::CivilSecond();
  const PolicyActivation activation(&facts, /*usage=*/nullptr, now, local_now);
  auto holds = [&](const Condition& when) {
    return when.program == nullptr || when.program->EvalBool(activation);
  };
  for (const RateLimitRule& rule : rules.rate_limits) {
    if (!holds(rule.when)) continue;
    absl::string_view key;
    if (rule.key.program != nullptr) {
      bool ok = false;
      key = rule.key.program->Eval(activation, &ok).string_value;
      if (!ok) continue;
    }
    asks->rates.push_back(limits::RateAsk{rule.name, key, rule.windows});
  }
  for (const ConcurrencyPool& pool : rules.concurrency) {
    if (!holds(pool.when)) continue;
    asks->pools.push_back(
        limits::PoolAsk{pool.name, pool.max_in_flight, &pool.reserve});
  }
}

std::string RateLimitRuleName(const limits::RateDenial& denial) {
  return absl::StrCat("rate_limit:", denial.rule);
}

std::string PoolRuleName(const limits::PoolDenial& denial) {
  return absl::StrCat("pool:", denial.pool);
}

std::string RateDenialMessage(const limits::RateDenial& denial) {
  const char* unit = denial.tokens ? "tokens" : "requests";
  std::string message = absl::StrCat("rate limit \"", denial.rule, "\"");
  if (!denial.key.empty()) absl::StrAppend(&message, " for \"", denial.key, "\"");
  absl::StrAppend(&message, ": ", denial.used, " of ", denial.limit, " ",
                  unit, " per ", WindowName(denial.window), " used; this call ",
                  "needs ", denial.wanted);
  if (denial.never_fits()) {
    absl::StrAppend(&message, ", more than the limit allows at all",
                    denial.tokens ? " (lower max_output_tokens)" : "");
  } else {
    absl::StrAppend(&message, "; retry in ",
                    absl::FormatDuration(denial.retry_after));
  }
  return message;
}

std::string PoolDenialMessage(const limits::PoolDenial& denial,
                              absl::string_view priority) {
  std::string message =
      absl::StrCat("pool \"", denial.pool, "\" has ", denial.in_flight, " of ",
                   denial.max_in_flight, " slots in flight");
  if (denial.reserved_for_others > 0) {
    absl::StrAppend(&message, "; ", denial.reserved_for_others,
                    " are reserved for priorities other than \"",
                    priority.empty() ? limits::kStandardPriority : priority,
                    "\"");
  }
  return message;
}

}  // namespace bursar::policy
